/* The log store's newline scan (engine/logs/store.py): the end offset of every line in a chunk.
 *
 * numpy finds them in two passes, a mask and then np.flatnonzero, whose loop stores an index for
 * every byte (a line of `seq` is 7.5 bytes): ~0.9 ms a MiB on this class of machine, the largest
 * part of capturing a fast writer. Here one pass compares 16 bytes at a time and stores only the
 * ends: ~0.17 ms a MiB (bench/capture.py). The store falls back to numpy where this module was
 * not built (no compiler at install); tests/test_logstore.py holds both to the same lines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Stores (i + 1) for each newline at i in data[0:size), at most `room` of them; returns how
 * many were stored. Stops early, with `room` stored, when there are more newlines than that. */
static Py_ssize_t
scan(const uint8_t *data, Py_ssize_t size, uint32_t *out, Py_ssize_t room)
{
    Py_ssize_t count = 0;
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    const __m128i newline = _mm_set1_epi8('\n');
    for (; i + 16 <= size; i += 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(data + i));
        unsigned hits = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, newline));
        while (hits) {
            if (count == room)
                return count;
            out[count++] = (uint32_t)(i + __builtin_ctz(hits) + 1);
            hits &= hits - 1;
        }
    }
#endif
    for (; i < size; i++) {
        if (data[i] == '\n') {
            if (count == room)
                return count;
            out[count++] = (uint32_t)(i + 1);
        }
    }
    return count;
}

PyDoc_STRVAR(line_ends_doc,
"line_ends(data, out) -> int\n\n"
"Write the end offset (index + 1) of each newline in ``data`` (a bytes-like object of at most\n"
"2**32 - 1 bytes) into ``out`` (a writable uint32 buffer, e.g. a numpy array), in order, and\n"
"return how many were written. Stops when ``out`` is full: size it for the worst case\n"
"(``len(data)``) or check for a full result. Releases the GIL while scanning.");

static PyObject *
line_ends(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "line_ends(data, out) takes exactly 2 arguments");
        return NULL;
    }
    Py_buffer data, out;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &out, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *result = NULL;
    if (out.itemsize != 4 || out.format == NULL || strchr("IL", out.format[0]) == NULL ||
        out.format[1] != '\0') {
        PyErr_Format(PyExc_TypeError, "out must be a uint32 buffer, not format '%s'",
                     out.format ? out.format : "B");
    }
    else if ((uint64_t)data.len > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "data is longer than 2**32 - 1 bytes");
    }
    else {
        Py_ssize_t count;
        Py_BEGIN_ALLOW_THREADS
        count = scan((const uint8_t *)data.buf, data.len, (uint32_t *)out.buf, out.len / 4);
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(count);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"line_ends", (PyCFunction)(void (*)(void))line_ends, METH_FASTCALL, line_ends_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lacrimosa.engine.logs._newlines",
    .m_doc = "The log store's newline scan, in C (see engine/logs/store.py).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__newlines(void)
{
    return PyModule_Create(&module);
}
