"""The project's own Indirect Object Identification (IOI) prompts, seeded and tokenizer-agnostic.

A template is written once in BABA order with slots ``{S}`` (subject, twice), ``{IO}`` (indirect
object, once, between the two subjects), ``{PLACE}`` and ``{OBJECT}``; its ABBA variant swaps the
first ``{S}`` with ``{IO}``. A prompt stops right before the answer, the IO name. Its ABC
counterpart fills the IO, S1 and S2 slots with three fresh, distinct names (none of them IO or S),
for corrupted runs.

:func:`tokenize_prompts` finds role positions by tokenizing the text up to and including each name
slot, so it works for any Hugging Face tokenizer and checks, rather than assumes, that every name
is one token.

Any tokenizer: :func:`ioi_vocabulary` keeps the names, places and objects that are one token
with a leading space in the model's tokenizer (``generate_prompts(..., tokenizer=...)`` uses
it; a clear error when too few survive), and :func:`default_prepend_bos` follows the tokenizer
on BOS: prepend one when the tokenizer adds it itself, or when its BOS is its end-of-text token
(GPT-2's convention, TransformerLens's default); otherwise (e.g. SmolLM2, whose "BOS" is the
chat marker ``<|im_start|>``) none, unless the caller asks for one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

PROMPT_TYPES = ("ABBA", "BABA", "mixed")

# Name slots in the order a prompt mentions them: IO, S1, S2 (S1 precedes IO only in BABA).
NAME_SLOTS = ("IO", "S1", "S2")
ROLES = ("IO", "IO-1", "IO+1", "S1", "S1-1", "S1+1", "S2", "S2-1", "S2+1", "END", "END-1")
# When one position carries several labels, the first in this order wins (see position_roles).
ROLE_PRIORITY = ("END", "IO", "S1", "S2", "S1+1", "S2+1", "IO+1", "S1-1", "S2-1", "IO-1", "END-1")
BOS_LABEL = "BOS"
PAD_LABEL = "PAD"
OTHER_LABEL = "other"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


TEMPLATES: dict[str, str] = {
    "T01": "Once {S} and {IO} arrived at the {PLACE}, {S} handed the {OBJECT} to",
    "T02": "Yesterday {S} met {IO} near the {PLACE}, and then {S} passed the {OBJECT} to",
    "T03": "During the trip to the {PLACE}, {S} and {IO} talked for hours. Later, {S} lent the "
    "{OBJECT} to",
    "T04": "At the {PLACE}, {S} sat next to {IO}. Before leaving, {S} showed the {OBJECT} to",
    "T05": "Because {S} and {IO} were late for the {PLACE}, {S} threw the {OBJECT} to",
    "T06": "Early in the morning {S} and {IO} cleaned the {PLACE}, so {S} offered the {OBJECT} to",
    "T07": "As soon as {S} and {IO} reached the {PLACE}, {S} sent the {OBJECT} to",
    "T08": "On Sunday {S} visited {IO} at the {PLACE}, where {S} sold the {OBJECT} to",
    "T09": "Both {S} and {IO} wanted to see the {PLACE}. In the end {S} mailed the {OBJECT} to",
    "T10": "Last week {S} and {IO} painted the {PLACE} together, and {S} returned the {OBJECT} to",
    "T11": "Inside the {PLACE}, {S} found {IO} reading quietly. Smiling, {S} brought the "
    "{OBJECT} to",
    "T12": "The day {S} and {IO} opened the {PLACE}, {S} presented the {OBJECT} to",
    "T13": "Before {S} and {IO} left the {PLACE}, {S} tossed the {OBJECT} to",
    "T14": "Whenever {S} and {IO} shop at the {PLACE}, {S} gives the {OBJECT} to",
    "T15": "After lunch {S} called {IO} from the {PLACE}, and later {S} delivered the {OBJECT} to",
    "T16": "Since {S} and {IO} both worked at the {PLACE}, {S} left the {OBJECT} to",
    "T17": "In the {PLACE}, {S} waved at {IO}, then {S} slid the {OBJECT} to",
    "T18": "Outside the {PLACE} {S} bumped into {IO}, so {S} described the {OBJECT} to",
    "T19": "Tonight {S} and {IO} are cooking at the {PLACE}, and {S} will pass the {OBJECT} to",
    "T20": "While {S} and {IO} waited outside the {PLACE}, {S} quietly read the {OBJECT} to",
}

NAMES = _words(
    """
    Mary John Alice Peter Laura David Emma James Sarah Michael Anna Robert Lisa Daniel Kate Thomas
    Julia Paul Maria Mark Susan Steven Helen George Linda Frank Karen Brian Nancy Kevin Diana Eric
    Rachel Jason Amy Adam Grace Ryan Emily Sam Rose Jack Claire Luke Ruth Alex Jane Chris Nina
    Scott Anne Tom Eva Ben Lucy Dan Sophie Joe Alan Kelly Henry Jessica Ian Victoria Carl Megan
    Victor Paula Oscar Diane Hugo Martin Sandra Leo Tina Max Carol Simon Fiona Oliver Rebecca Bill
    Natalie Jim Andrea Matt Heather Nick Sharon Tony Jennifer Eddie Monica Greg Teresa Philip
    Wendy Joshua Neil Judy Gary Donna Roger Amanda Jacob Caroline
    """
)
PLACES = _words(
    """
    store park school library garden kitchen beach office hospital station market museum
    restaurant cafe theater bakery farm church harbor stadium airport hotel gym zoo greenhouse
    aquarium laundromat
    """
)
OBJECTS = _words(
    """
    book ball key letter apple ring phone bottle hat basket cake ticket map lamp pencil camera
    guitar wallet umbrella kite cup scarf
    """
)

_SLOT = re.compile(r"\{(S|IO|PLACE|OBJECT)\}")


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt and its ABC counterpart.

    ``text`` stops before the answer ``io``. ``spans`` are the character spans of the IO, S1 and
    S2 names in ``text``; ``corrupted_names``/``corrupted_spans`` the same for ``corrupted_text``
    (names in slot order IO, S1, S2).
    """

    text: str
    io: str
    s: str
    template: str
    order: str
    place: str
    obj: str
    spans: tuple[tuple[int, int], ...]
    corrupted_text: str
    corrupted_names: tuple[str, str, str]
    corrupted_spans: tuple[tuple[int, int], ...]


@dataclass
class PromptBatch:
    """Tokenized prompts: BOS-prefixed (optionally), right-padded, with role positions.

    ``roles[r][b]`` is the position of role ``r`` in prompt ``b`` (``END`` = last real token,
    the position that predicts the answer). ``io_token``/``s_token`` are the clean answers'
    token ids, also in a corrupted batch, so the IO−S logit difference is comparable.
    """

    tokens: Int[Tensor, "batch pos"]
    mask: Bool[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    roles: dict[str, Int[Tensor, " batch"]]
    io_token: Int[Tensor, " batch"]
    s_token: Int[Tensor, " batch"]
    prompts: list[IOIPrompt]
    prepend_bos: bool
    corrupted: bool = False

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def baba_to_abba(template: str) -> str:
    """Swap the first ``{S}`` with ``{IO}``: BABA order becomes ABBA."""
    first_s, first_io = template.index("{S}"), template.index("{IO}")
    if not first_s < first_io < template.index("{S}", first_s + 1):
        raise ValueError(f"template {template!r} is not in BABA order (S ... IO ... S)")
    return (
        template[:first_s] + "{IO}" + template[first_s + 3 : first_io] + "{S}"
        f"{template[first_io + 4 :]}"
    )


def render(
    template: str, io: str, s1: str, s2: str, place: str, obj: str
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Fill a template; return the text and the character spans of the IO, S1, S2 names."""
    fills = {"IO": [io], "S": [s1, s2], "PLACE": [place], "OBJECT": [obj]}
    pieces: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    cursor, length = 0, 0
    for match in _SLOT.finditer(template):
        literal = template[cursor : match.start()]
        pieces.append(literal)
        length += len(literal)
        kind = match.group(1)
        value = fills[kind].pop(0)
        if kind == "IO":
            spans["IO"] = (length, length + len(value))
        elif kind == "S":
            spans["S1" if "S1" not in spans else "S2"] = (length, length + len(value))
        pieces.append(value)
        length += len(value)
        cursor = match.end()
    pieces.append(template[cursor:])
    return "".join(pieces), tuple(spans[slot] for slot in NAME_SLOTS)


MIN_NAMES = 5  # 2 for the prompt, 3 for its ABC counterpart


def single_tokens(tokenizer: Any, words: Sequence[str]) -> list[str]:
    """The words that are one token (not the unknown token) with a leading space, in order."""
    if not words:
        return []
    ids = tokenizer([" " + word for word in words], add_special_tokens=False)["input_ids"]
    unknown = getattr(tokenizer, "unk_token_id", None)
    return [w for w, i in zip(words, ids, strict=True) if len(i) == 1 and i[0] != unknown]


def ioi_vocabulary(
    tokenizer: Any,
    names: Sequence[str] = NAMES,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
) -> tuple[list[str], list[str], list[str]]:
    """Names, places and objects that are single tokens with a leading space for ``tokenizer``.

    Raises ValueError saying how many survived when fewer than 5 names, or no place or no
    object, are left.
    """
    kept = (
        single_tokens(tokenizer, names),
        single_tokens(tokenizer, places),
        single_tokens(tokenizer, objects),
    )
    if len(set(kept[0])) < MIN_NAMES or not kept[1] or not kept[2]:
        raise ValueError(
            f"too few IOI words are single tokens (with a leading space) for this tokenizer: "
            f"{len(kept[0])} of {len(names)} names (need {MIN_NAMES}), {len(kept[1])} of "
            f"{len(places)} places, {len(kept[2])} of {len(objects)} objects (need 1 each)"
        )
    return kept


def default_prepend_bos(tokenizer: Any) -> bool:
    """Whether IOI prompts get a BOS token for this tokenizer (see the module docstring)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    if getattr(tokenizer, "bos_token", None) == getattr(tokenizer, "eos_token", None):
        return True
    encoded = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(encoded) and encoded[0] == bos


def generate_prompts(
    n: int,
    prompt_type: str = "mixed",
    seed: int = 0,
    *,
    templates: Mapping[str, str] | None = None,
    names: Sequence[str] = NAMES,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
    pair_filter: Callable[[str, str], bool] | None = None,
    tokenizer: Any = None,
) -> list[IOIPrompt]:
    """``n`` prompts of type ``ABBA``, ``BABA`` or ``mixed`` (order drawn per prompt), seeded.

    ``templates`` maps ids to BABA-order templates (default :data:`TEMPLATES`). ``pair_filter``
    (io, s) → bool restricts the name pairs drawn, e.g. to hold pairs out of a training set.
    With ``tokenizer``, the words are first filtered by :func:`ioi_vocabulary` (a no-op when
    every word is one token, so the prompts are those without it).
    """
    return list(
        iter_prompts(
            n,
            prompt_type,
            seed,
            templates=templates,
            names=names,
            places=places,
            objects=objects,
            pair_filter=pair_filter,
            tokenizer=tokenizer,
        )
    )


def iter_prompts(
    n: int,
    prompt_type: str = "mixed",
    seed: int = 0,
    *,
    templates: Mapping[str, str] | None = None,
    names: Sequence[str] = NAMES,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
    pair_filter: Callable[[str, str], bool] | None = None,
    tokenizer: Any = None,
) -> Iterator[IOIPrompt]:
    """:func:`generate_prompts` one prompt at a time (the same prompts, in the same order), so
    a run of any size holds only the batch it works on. The arguments are checked at once."""
    if tokenizer is not None:
        names, places, objects = ioi_vocabulary(tokenizer, names, places, objects)
    if prompt_type not in PROMPT_TYPES:
        raise ValueError(
            f"unknown prompt type {prompt_type!r}: use one of {', '.join(PROMPT_TYPES)}"
        )
    if len(set(names)) < 5:
        raise ValueError("need at least 5 distinct names (2 for the prompt, 3 for its ABC)")
    chosen = dict(TEMPLATES if templates is None else templates)
    return _prompts(
        n, prompt_type, random.Random(seed), chosen, names, places, objects, pair_filter
    )


def _prompts(
    n: int,
    prompt_type: str,
    rng: random.Random,
    chosen: Mapping[str, str],
    names: Sequence[str],
    places: Sequence[str],
    objects: Sequence[str],
    pair_filter: Callable[[str, str], bool] | None,
) -> Iterator[IOIPrompt]:
    template_ids = sorted(chosen)
    unique_names = sorted(set(names))
    for _ in range(n):
        template_id = rng.choice(template_ids)
        order = rng.choice(("ABBA", "BABA")) if prompt_type == "mixed" else prompt_type
        baba = chosen[template_id]
        template = baba if order == "BABA" else baba_to_abba(baba)
        io, s = _draw_pair(rng, unique_names, pair_filter)
        place, obj = rng.choice(places), rng.choice(objects)
        abc = rng.sample([name for name in unique_names if name not in (io, s)], 3)
        text, spans = render(template, io, s, s, place, obj)
        corrupted_text, corrupted_spans = render(template, abc[0], abc[1], abc[2], place, obj)
        yield IOIPrompt(
            text=text,
            io=io,
            s=s,
            template=template_id,
            order=order,
            place=place,
            obj=obj,
            spans=spans,
            corrupted_text=corrupted_text,
            corrupted_names=(abc[0], abc[1], abc[2]),
            corrupted_spans=corrupted_spans,
        )


def _draw_pair(
    rng: random.Random, names: list[str], pair_filter: Callable[[str, str], bool] | None
) -> tuple[str, str]:
    for _ in range(10_000):
        io, s = rng.sample(names, 2)
        if pair_filter is None or pair_filter(io, s):
            return io, s
    raise ValueError("pair_filter rejected 10,000 name pairs in a row; it admits (almost) none")


def tokenize_prompts(
    prompts: Sequence[IOIPrompt],
    tokenizer: Any,
    prepend_bos: bool | None = True,
    corrupted: bool = False,
) -> PromptBatch:
    """Tokenize prompts (or, with ``corrupted``, their ABC texts) and locate every role.

    ``prepend_bos=None`` follows the tokenizer (:func:`default_prepend_bos`).

    A name slot's position is the token count of the text before it; the text up to and including
    the name must add exactly one token, equal to the name tokenized on its own with a leading
    space. Otherwise ValueError names the offending name and template.
    """
    if not prompts:
        raise ValueError("no prompts to tokenize")
    if prepend_bos is None:
        prepend_bos = default_prepend_bos(tokenizer)
    offset = 1 if prepend_bos else 0
    if prepend_bos and tokenizer.bos_token_id is None:
        raise ValueError("tokenizer has no BOS token; call with prepend_bos=False")
    texts = [p.corrupted_text if corrupted else p.text for p in prompts]
    slot_names = [p.corrupted_names if corrupted else (p.io, p.s, p.s) for p in prompts]
    slot_spans = [p.corrupted_spans if corrupted else p.spans for p in prompts]

    def encode(strings: list[str]) -> list[list[int]]:
        return list(tokenizer(strings, add_special_tokens=False)["input_ids"])

    full = encode(texts)
    starts = [text[:start].rstrip() for text, spans in zip(texts, slot_spans, strict=True)
              for start, _ in spans]  # fmt: skip
    stops = [text[:stop] for text, spans in zip(texts, slot_spans, strict=True)
             for _, stop in spans]  # fmt: skip
    before_name, through_name = encode(starts), encode(stops)
    all_names = sorted({name for names in slot_names for name in names} | _answers(prompts))
    name_ids = dict(zip(all_names, encode([" " + name for name in all_names]), strict=True))
    for name in all_names:
        _check_single_token(tokenizer, name, name_ids[name])

    positions: dict[str, list[int]] = {role: [] for role in ROLES}
    for b, (prompt, ids) in enumerate(zip(prompts, full, strict=True)):
        for k, (slot, name) in enumerate(zip(NAME_SLOTS, slot_names[b], strict=True)):
            before, through = before_name[3 * b + k], through_name[3 * b + k]
            if through != [*before, *name_ids[name]] or ids[: len(through)] != through:
                raise ValueError(
                    f"name {name!r} does not stay one token in context in template "
                    f"{prompt.template}: {tokenizer.convert_ids_to_tokens(through[len(before) :])} "
                    f"instead of {tokenizer.convert_ids_to_tokens(name_ids[name])}; templates "
                    "must put a space before every name"
                )
            position = offset + len(before)
            positions[slot] += [position]
            positions[f"{slot}-1"] += [position - 1]
            positions[f"{slot}+1"] += [position + 1]
        end = offset + len(ids) - 1
        positions["END"] += [end]
        positions["END-1"] += [end - 1]
        if min(positions[role][-1] for role in ROLES) < 0:
            raise ValueError(
                f"template {prompt.template} starts with a name, so it has no S1-1/IO-1 token "
                "without BOS; use prepend_bos=True or a template with a word before the names"
            )

    lengths = torch.tensor([offset + len(ids) for ids in full])
    pad_id = _pad_id(tokenizer)
    tokens = torch.full((len(prompts), int(lengths.max())), pad_id, dtype=torch.long)
    for b, ids in enumerate(full):
        row = [tokenizer.bos_token_id] * offset + ids
        tokens[b, : len(row)] = torch.tensor(row)
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    return PromptBatch(
        tokens=tokens,
        mask=mask,
        lengths=lengths,
        roles={role: torch.tensor(values) for role, values in positions.items()},
        io_token=torch.tensor([name_ids[p.io][0] for p in prompts]),
        s_token=torch.tensor([name_ids[p.s][0] for p in prompts]),
        prompts=list(prompts),
        prepend_bos=prepend_bos,
        corrupted=corrupted,
    )


def position_roles(batch: PromptBatch) -> list[list[str]]:
    """A label for every (prompt, position).

    A role position gets the first matching role of :data:`ROLE_PRIORITY` (primary roles
    END, IO, S1, S2, then neighbours S1+1, S2+1, IO+1, S1-1, S2-1, IO-1, END-1); position 0
    of a BOS-prefixed prompt is ``"BOS"``, padding is ``"PAD"``, anything else ``"other"``.
    """
    labels = [[OTHER_LABEL if real else PAD_LABEL for real in row] for row in batch.mask.tolist()]
    if batch.prepend_bos:
        for row in labels:
            row[0] = BOS_LABEL
    for role in reversed(ROLE_PRIORITY):  # higher priority written last
        for b, position in enumerate(batch.roles[role].tolist()):
            labels[b][position] = role
    return labels


def _answers(prompts: Sequence[IOIPrompt]) -> set[str]:
    return {p.io for p in prompts} | {p.s for p in prompts}


def _check_single_token(tokenizer: Any, name: str, ids: list[int]) -> None:
    if len(ids) != 1:
        raise ValueError(
            f"name {name!r} is {len(ids)} tokens, "
            f"{tokenizer.convert_ids_to_tokens(ids)}, for this tokenizer; IOI needs single-token "
            "names: remove it from the name list"
        )
    if ids[0] == tokenizer.unk_token_id:
        raise ValueError(
            f"name {name!r} is unknown to this tokenizer (maps to "
            f"{tokenizer.unk_token!r}); add it to the vocabulary or remove it from the name list"
        )


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
