"""The footer: the keys that work here, on one line, drawn as one piece of text.

Textual's own ``Footer`` mounts a widget per key and a group per binding group, and mounts them
all again (CSS matched, layout redone) each time the active bindings change: every view switch and
every move of the focus. During an event flood that rebuild was the largest part of a view
switch's time (bench/tui_events.py). This one keeps the same look (Footer's compact style, its
theme colours) as a single line of text: when the bindings change it recomputes what it shows and
repaints itself only if that changed, with no layout. A click on a key (or its description)
presses the key, as on Footer.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from itertools import groupby
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

from .line_memo import RemembersItsLines


@dataclass(frozen=True, slots=True)
class _Key:
    key: str  # what pressing it sends (Binding.key)
    display: str  # how it is shown
    enabled: bool


@dataclass(frozen=True, slots=True)
class _Hint:
    """One entry: a key and its description, or a group's keys shown together ("12345 views")."""

    keys: tuple[_Key, ...]
    description: str
    grouped: bool


class KeyHints(RemembersItsLines, Widget, can_focus=False):
    DEFAULT_CSS = """
    KeyHints {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
    }
    KeyHints > .key-hints--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeyHints > .key-hints--description {
        color: $footer-description-foreground;
        background: $footer-description-background;
    }
    KeyHints > .key-hints--disabled {
        text-style: dim;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "key-hints--key",
        "key-hints--description",
        "key-hints--disabled",
    }
    ALLOW_SELECT = False

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.hints: tuple[_Hint, ...] = ()

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if screen is not self.screen:
            return
        hints = self._hints_of(screen)
        if hints != self.hints:
            self.hints = hints
            self.refresh()

    def _hints_of(self, screen: Screen[object]) -> tuple[_Hint, ...]:
        """What Footer would show: the shown bindings, one entry per action, and the bindings of
        a group (two or more) as one entry with the group's description."""
        firsts: dict[str, tuple[Binding, bool]] = {}  # the first shown binding of each action
        for _, binding, enabled, _ in screen.active_bindings.values():
            if binding.show:
                firsts.setdefault(binding.action, (binding, enabled))
        hints: list[_Hint] = []
        for group, members in groupby(firsts.values(), lambda pair: pair[0].group):
            pairs = list(members)
            keys = [_Key(b.key, self.app.get_key_display(b), enabled) for b, enabled in pairs]
            if group is not None and len(pairs) > 1:
                hints.append(_Hint(tuple(keys), group.description, grouped=True))
            else:
                hints.extend(
                    _Hint((key,), binding.description, grouped=False)
                    for key, (binding, _) in zip(keys, pairs, strict=True)
                )
        return tuple(hints)

    def looks(self) -> Hashable:
        return (self.size, self.hints)  # the colours are the theme's, the same in every view

    def render(self) -> Text:
        return self._line()[0]

    def _line(self) -> tuple[Text, list[tuple[int, int, str, bool]]]:
        """The line of hints, and where each key lies in it: (first column, end column, key,
        enabled)."""
        key_style = self.get_component_rich_style("key-hints--key")
        description_style = self.get_component_rich_style("key-hints--description")
        disabled = self.get_component_rich_style("key-hints--disabled")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        spans: list[tuple[int, int, str, bool]] = []
        for hint in self.hints:
            if hint.grouped:
                text.append(" ")
            first = len(text)
            for key in hint.keys:
                start = len(text)
                text.append(key.display, key_style if key.enabled else key_style + disabled)
                if hint.grouped:  # each key of a group is a target of its own
                    spans.append((start, len(text), key.key, key.enabled))
            if hint.description:
                text.append(" " + hint.description, description_style)
            if not hint.grouped:  # the key and its description
                spans.append((first, len(text), hint.keys[0].key, hint.keys[0].enabled))
            text.append(" ")
        return text, spans

    def on_mouse_down(self, event: events.MouseDown) -> None:
        for start, end, key, enabled in self._line()[1]:
            if start <= event.x < end:
                if enabled:
                    self.app.simulate_key(key)
                else:
                    self.app.bell()
                return
