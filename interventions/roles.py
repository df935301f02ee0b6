"""Token roles and flows: which positions of a row play which part, and the edges a flow cuts.

A role is derived per row from its Layout (pure position bookkeeping, every family alike, ``auto``
included): ``image`` (every image token; Pixtral's breaks and Emu3's line ends included), ``last_image``
(the image token just before each gate), ``image_start`` (start-of-image and any header), ``gate``,
``question`` (prompt tokens after the row's last gate except the last one), ``last`` (the last prompt
token), ``generated`` (every generated token, positions from the padded prompt length on) and ``prefix``
(prompt tokens before the first image); shorthands ``text`` = question + last + generated and ``*`` =
every position. With several images a role covers every image of the row.

A flow is ``SRC>DST`` edges joined by ``+`` (``image>question+image>last``): queries in DST may not read
keys in SRC. Keys must be prompt positions (a generated token's key does not exist when the prompt is
read), so SRC cannot be ``generated``, ``text`` or ``*``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: read without torch, as interventions.conditions is
    from .layouts import Layout

EDGE, JOIN = ">", "+"  # "+" joins edges: it survives lmms-eval's comma-split --model_args
PROMPT_ROLES = ("image", "last_image", "image_start", "gate", "question", "last", "prefix")
ROLES = (*PROMPT_ROLES, "generated", "text", "*")

# A set of positions as half-open ranges; a stop of None runs on through every generated token.
Ranges = tuple[tuple[int, int | None], ...]


def role_ranges(role: str, layout: Layout) -> Ranges:
    """The positions of ``role`` in the row of ``layout``, as sorted, disjoint, non-empty ranges."""
    spans, length = layout.spans, layout.length
    after_gate = spans[-1].gate[-1] + 1 if spans else layout.first
    if role == "image":
        ranges = [(span.image.start, span.image.stop) for span in spans]
    elif role == "last_image":
        ranges = [(span.gate[0] - 1, span.gate[0]) for span in spans]
    elif role == "image_start":
        ranges = [(span.start[0], span.start[-1] + 1) for span in spans if span.start]
    elif role == "gate":
        ranges = [(span.gate[0], span.gate[-1] + 1) for span in spans]
    elif role == "question":
        ranges = [(after_gate, length - 1)]
    elif role == "last":
        ranges = [(length - 1, length)]
    elif role == "generated":
        ranges = [(length, None)]
    elif role == "prefix":
        opening = (spans[0].start or (spans[0].image.start,))[0] if spans else length
        ranges = [(layout.first, opening)]
    elif role == "text":
        ranges = [(min(after_gate, length - 1), None)]
    elif role == "*":
        ranges = [(0, None)]
    else:
        raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    return merge(ranges)


def merge(ranges) -> Ranges:
    """Sorted, disjoint, non-empty ranges covering the same positions (touching ranges joined)."""
    out: list[list] = []
    for lo, hi in sorted(ranges, key=lambda r: (r[0], float("inf") if r[1] is None else r[1])):
        if hi is not None and hi <= lo:
            continue
        if out and (out[-1][1] is None or lo <= out[-1][1]):
            out[-1][1] = None if None in (hi, out[-1][1]) else max(hi, out[-1][1])
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def positions(role: str, layout: Layout) -> tuple[int, ...]:
    """The prompt positions of a key role (SRC), in order."""
    if role not in PROMPT_ROLES:
        raise ValueError(
            f"role {role!r} cannot be cut as keys (SRC): generated tokens have no keys when the prompt is read; "
            f"use one of {', '.join(PROMPT_ROLES)}"
        )
    return tuple(p for lo, hi in role_ranges(role, layout) for p in range(lo, hi))


def parse_cut(cut) -> tuple[tuple[str, str], ...]:
    """The (SRC, DST) edges of a flow spec ``"image>question+image>last"`` (a list of such strings or of
    (SRC, DST) pairs is accepted too); unknown roles, a key role that is not a prompt role, or a
    malformed edge raise ValueError naming it."""
    if isinstance(cut, str):
        items = cut.replace(" ", "").replace(",", JOIN).split(JOIN)
    elif isinstance(cut, (list, tuple)):
        items = [EDGE.join(item) if isinstance(item, (list, tuple)) else str(item) for item in cut]
    else:
        raise ValueError(f"cut must be a string like 'image>last+gate>text', got {cut!r}")
    edges = []
    for item in items:
        src, sep, dst = item.partition(EDGE)
        if not sep or not src or not dst or EDGE in dst:
            raise ValueError(f"invalid cut edge {item!r} in {cut!r}: write SRC>DST, edges joined by '+' (e.g. image>last+gate>text)")
        for role in (src, dst):
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} in cut {cut!r}; valid roles: {', '.join(ROLES)}")
        if src not in PROMPT_ROLES:
            raise ValueError(
                f"cut {cut!r}: {src!r} cannot be a SRC (keys must be prompt positions); use one of {', '.join(PROMPT_ROLES)}"
            )
        edges.append((src, dst))
    if not edges:
        raise ValueError("cut needs at least one SRC>DST edge, e.g. cut=image>last")
    return tuple(dict.fromkeys(edges))


def canonical_cut(cut) -> str:
    """A flow spec in its recorded form: edges without spaces, in the given order, duplicates dropped."""
    return JOIN.join(EDGE.join(edge) for edge in parse_cut(cut))


def flow_cuts(cut: str, layout: Layout) -> tuple[tuple[tuple[int, int | None], tuple[int, ...]], ...]:
    """For the row of ``layout``: (query range, cut keys) pairs, one per query range, the keys of every
    edge whose DST covers it joined; empty key sets and empty query ranges are dropped."""
    by_range: dict[tuple[int, int | None], set[int]] = {}
    for src, dst in parse_cut(cut):
        keys = positions(src, layout)
        for queries in role_ranges(dst, layout):
            if keys:
                by_range.setdefault(queries, set()).update(keys)
    return tuple((queries, tuple(sorted(keys))) for queries, keys in by_range.items())
