"""The command line's argument parser: errors first, short, with the sub-command's usage and a suggestion.

``argparse`` prints a misspelt option under the top-level usage and a missing one after the whole usage of the
command; :class:`Parser` (every parser and sub-parser of ``facetwin``) says instead, on one line (DESIGN.md: errors
are one line on stderr, exit status 2)::

    facetwin verify: error: unrecognized arguments: --fcae (did you mean --face?); usage: facetwin verify IMAGE_A
    IMAGE_B [options] (`facetwin verify --help` lists every option)

The values that name things (backbones, files) are checked while parsing (:func:`existing_path`,
:func:`backbone_source`), before any model is loaded.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

PARSER = "_parser"  # the namespace attribute naming the innermost parser that parsed a command line
RENAMED = {"--onnx": "--out"}  # options of earlier releases: the error names the new one


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with facetwin's error format (see the module docstring)."""

    def parse_known_args(self, args=None, namespace=None):
        self._words = list(sys.argv[1:] if args is None else args)  # for the suggestions of error()
        namespace, extras = super().parse_known_args(args, namespace)
        if not hasattr(namespace, PARSER):  # sub-parsers finish first: the innermost one is kept
            setattr(namespace, PARSER, self)
        return namespace, extras

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}{self._suggestion(message)}; usage: {self.short_usage()} "
                         f"(`{self.prog} --help` lists every option)\n")
        raise SystemExit(2)

    def short_usage(self) -> str:
        """``prog POSITIONAL... --required VALUE [options]``: what the command needs, in one line (a command that
        wrote its own usage, such as ``facetwin cluster`` with its actions, gets that)."""
        if self.usage:
            return self.usage.replace("%(prog)s", self.prog)
        words = [self.prog]
        optional = False
        for action in self._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if not action.option_strings:
                words.append(self._metavar(action))
            elif action.required:
                words.append(f"{action.option_strings[0]} {self._metavar(action)}")
            else:
                optional = True
        return " ".join(words + (["[options]"] if optional else []))

    @staticmethod
    def _metavar(action) -> str:
        if isinstance(action, argparse._SubParsersAction):
            return action.metavar or "{" + ",".join(action.choices) + "}"
        name = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
        if action.nargs == "?" and not action.option_strings:
            return f"[{name}]"
        return {"+": f"{name}...", "*": f"[{name}...]"}.get(action.nargs, str(name))

    def _suggestion(self, message: str) -> str:
        """`` (did you mean X?)`` for a misspelt option, choice or sub-command, the choices of a missing
        sub-command, else ``""``."""
        old = next((w.split("=")[0] for w in getattr(self, "_words", []) if w.split("=")[0] in RENAMED), None)
        if old and old not in {s for action in self._actions for s in action.option_strings}:
            return f" ({old} is now {RENAMED[old]})"
        if message.startswith("the following arguments are required"):
            missing = message.split(":", 1)[1].replace(" ", "").split(",")
            for action in self._actions:
                if not action.option_strings and action.choices and self._metavar(action).strip("[]") in missing:
                    return f" (one of: {', '.join(action.choices)})"
            return ""
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            options = [s for action in self._actions for s in action.option_strings]
            for word in unknown.group(1).split():
                close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
                if word.startswith("-") and close:
                    return f" (did you mean {close[0]}?)"
            return ""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = [c.strip(" '") for c in choice.group(2).split(",")]
            close = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.5)
            return f" (did you mean {close[0]}?)" if close else ""
        return ""


def existing_path(kind: str = "file", what: str | None = None):
    """An argparse ``type`` that refuses a path that does not exist: ``kind`` ``file`` or ``folder``; ``what`` names
    the expected thing in the message (``photo``, ``pairs file``; default: the kind)."""
    what = what or kind

    def check(text: str) -> str:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text}: no such {kind}")
        if kind == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder, not a {what}")
        if kind == "folder" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a file, not a {what}")
        return text

    check.__name__ = what  # argparse names the type in some messages
    return check


def backbone_source(text: str) -> str:
    """An argparse ``type`` for ``--backbone``: known names (``+``-joined), with a suggestion for a typo."""
    from facetwin.backbones.registry import TTA_CHOICES, backbone_names

    name, _, tta = text.partition(":")
    names = backbone_names()
    for part in name.split("+"):
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise argparse.ArgumentTypeError(f"unknown backbone '{part}'{hint}; choose from {', '.join(names)}")
    if tta and tta not in TTA_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown test-time augmentation ':{tta}'; use :flip or --tta flip")
    return text


def parse(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; leftover words are reported by the sub-command that was being parsed."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        getattr(args, PARSER, parser).error(f"unrecognized arguments: {' '.join(extras)}")
    return args


__all__ = ["Parser", "backbone_source", "existing_path", "parse"]
