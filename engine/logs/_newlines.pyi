# The C newline scan's interface (_newlines.c), for the type checker.
from typing_extensions import Buffer

def line_ends(data: Buffer, out: Buffer, /) -> int: ...
