"""Word-level encoding of a whole batch in numpy: case markers, word split and vocabulary lookup.

The Rust ``WordLevel`` tokenizer costs ~0.3 us a token on this kind of CPU (regex split, one
``Encoding`` object per text, offsets) and the byte rules before it another ~0.1 us. This module
gives the same ids with neither, on the UTF-8 bytes of the batch joined into one buffer:

1. the rules that rewrite text (``fix_html``, ``xxrep``) run as in ``rules.join_rules``;
2. *chunks* are the runs of non-whitespace characters. A chunk made only of word characters, or
   of one character, is exactly one token of ``rules.WORD_PATTERN``; the other chunks
   (``don't``, ``1,000``, ``word,``) are split by the Rust pre-tokenizer itself, in one call;
3. ``xxup`` / ``xxmaj`` are decided per chunk from the ASCII capitals (the rules of
   ``rules._case_bytes``); lower-casing is byte arithmetic (ASCII) or ``str.lower``;
4. a one-token chunk of up to ``MAX_KEYED`` bytes is read as 64-bit words straight from the
   buffer, hashed, found by binary search among the vocabulary's hashes and then checked word by
   word against the entry found, so the id is exact whatever the hash does (longer chunks go
   through the dict);
5. the ids are scattered into one array with ``xxbos`` (and ``xxeos``) per text, then the
   word-repeat rule runs on ids (``rules.wrep_ids``).

Steps 1-2 (``token_spans``) also give ``word_counts`` the tokens to count for a vocabulary. A
process takes its texts in pieces of ``PIECE_CHARS`` (``piece_bounds``), whose arrays stay in cache.

Which non-ASCII characters are word characters is asked of the Rust pre-tokenizer (its ``\\w`` is
Unicode's, with combining marks), once per character. ``encode_joined`` returns ``None`` (the
caller then uses the Rust path) when a character's lower-case form has another UTF-8 length, or
for a capital sigma (``str.lower`` makes it ``ς`` at a word's end).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ulmfit.forked import can_fork, fork_each
from ulmfit.text.tokenize import rules as R
from ulmfit.text.tokenize.special import BOS_ID, EOS_ID, MAJ_ID, UNK_ID, UP_ID

MAX_KEYED = 32  # bytes: four 64-bit words
_WORDS = MAX_KEYED // 8
_C_SPACE, _C_WORD, _C_OTHER = 0, 1, 2
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _byte_classes(b: np.ndarray) -> np.ndarray:
    """Class of each byte as an ASCII character, in SIMD passes (faster than a 256-entry table
    gather): space is NUL, 9-13 and 28-32 (``rules._SPACE`` and ``str.isspace``), word is
    ``[0-9A-Za-z_]``, anything else (bytes >= 128 too) is other."""
    u8 = np.uint8
    word = ((b | u8(32)) - u8(97) < 26) | (b - u8(48) < 10) | (b == 95)
    not_space = (b - u8(9) >= 5) & (b - u8(28) >= 5) & (b != 0)
    return (not_space.view(np.uint8) << 1) - word.view(np.uint8)


def _lower_bytes(b: np.ndarray) -> np.ndarray:
    """``A-Z`` to ``a-z``, other bytes kept (a quarter of the cost of a table gather)."""
    return b | ((b - np.uint8(65) < 26).view(np.uint8) << 5)


def word_keys(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray):
    """For spans ``buf[s:s+n]`` (n <= MAX_KEYED; ``buf`` padded with MAX_KEYED zero bytes): the
    span as four little-endian uint64 words (bytes past the end zeroed) and a 64-bit hash."""
    view = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    words = np.zeros((_WORDS, len(starts)), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(_WORDS):
            sel = np.flatnonzero(lens > 8 * j) if j else slice(None)
            w = view[starts[sel] + 8 * j]
            drop = ((8 - np.minimum(lens[sel] - 8 * j, 8)) * 8).astype(np.uint64)
            w <<= drop  # zero the bytes past the end (little-endian: the high ones)
            w >>= drop
            words[j, sel] = w
            if j and not len(sel):
                break
        h = words[0] * _MIX
        h ^= lens.astype(np.uint64)
        for j in range(1, _WORDS):
            long_ = np.flatnonzero(lens > 8 * j)
            if not len(long_):
                break
            h[long_] = (h[long_] ^ words[j, long_]) * _MIX
        h ^= h >> np.uint64(29)
    return words, h


class WordSplitter:
    """What the numpy pass asks of the Rust pre-tokenizer (``rules.WORD_PATTERN``): the class of a
    non-ASCII character (``char_class``) and the tokens of the chunks it cannot split (``split``)."""

    def __init__(self, pre_tokenizer):
        self.pre = pre_tokenizer
        self._cls: dict[int, int] = {}

    def char_class(self, cp: int) -> int:
        """Space (Python's ``isspace``, as ``rules`` normalises), word or other (the Rust split)."""
        c = self._cls.get(cp)
        if c is None:
            ch = chr(cp)
            if ch.isspace():
                c = _C_SPACE
            else:
                try:
                    toks = [t for t, _ in self.pre.pre_tokenize_str("_" + ch)]
                except Exception:  # a lone surrogate
                    toks = []
                c = _C_WORD if toks == ["_" + ch] else _C_SPACE if toks == ["_"] else _C_OTHER
            self._cls[cp] = c
        return c

    def split(self, chunks: list[str]) -> list[list[str]]:
        """Tokens of each chunk, from one call of the Rust pre-tokenizer."""
        joined = " ".join(chunks)
        toks = self.pre.pre_tokenize_str(joined)
        starts = np.cumsum([0] + [len(c) + 1 for c in chunks[:-1]])
        which = np.searchsorted(starts, [o[0] for _, o in toks], side="right") - 1
        out: list[list[str]] = [[] for _ in chunks]
        for k, (t, _) in zip(which.tolist(), toks):
            out[k].append(t)
        return out


class VocabTable(WordSplitter):
    """The vocabulary's strings as ``word_keys`` in an open-addressing table, plus what
    ``encode_joined`` needs from the tokenizer: ``stoi`` and the Rust pre-tokenizer."""

    def __init__(self, itos: list[str], stoi: dict[str, int], pre_tokenizer):
        super().__init__(pre_tokenizer)
        self.stoi = stoi
        enc = [(i, s.encode("utf-8", "surrogatepass")) for i, s in enumerate(itos) if s]
        enc = [(i, b) for i, b in enc if len(b) <= MAX_KEYED]
        lens = np.array([len(b) for _, b in enc], np.int64)
        buf = np.frombuffer(b"".join(b for _, b in enc) + bytes(MAX_KEYED + 8), np.uint8)
        words, h = word_keys(buf, np.cumsum(lens) - lens, lens)
        self.hash, self.words, self.lens = h, words, lens
        self.ids = np.array([i for i, _ in enc], np.int32)
        self.usable = bool(len(h)) and len(np.unique(h)) == len(h)
        self._build_slots()
        self._memo: dict[bytes, list[int]] = {}

    def chunk_ids(self, chunks: list[bytes]) -> list[list[int]]:
        """Ids of each chunk's tokens (``split``), kept for the next call: the same chunks recur."""
        memo = self._memo if len(self._memo) < 1 << 16 else {}
        new = [c for c in dict.fromkeys(chunks) if c not in memo]
        get = self.stoi.get
        for c, toks in zip(new, self.split([c.decode("utf-8", "surrogatepass") for c in new])):
            memo[c] = [get(t, UNK_ID) for t in toks]
        self._memo = memo
        return [memo[c] for c in chunks]

    def _build_slots(self):
        """Open addressing (linear probing, load <= 1/4) from hash to entry, built in rounds."""
        bits = max(10, (4 * len(self.hash)).bit_length())
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        self.slots = np.full(1 << bits, -1, np.int32)
        home = (self.hash >> self.shift).astype(np.int64)
        pending, self.probes = np.arange(len(self.hash)), 0
        while len(pending):
            idx = (home[pending] + self.probes) & self.mask
            free = self.slots[idx] == -1
            won_slots, first = np.unique(idx[free], return_index=True)
            self.slots[won_slots] = pending[free][first]
            placed = np.zeros(len(pending), bool)
            placed[np.flatnonzero(free)[first]] = True
            pending = pending[~placed]
            self.probes += 1

    def lookup(self, words: np.ndarray, h: np.ndarray, lens: np.ndarray) -> np.ndarray:
        entry = np.full(len(h), -1, np.int64)
        idx = (h >> self.shift).astype(np.int64)
        active = np.arange(len(h))
        for r in range(self.probes):
            e = self.slots[(idx[active] + r) & self.mask]
            hit = e >= 0
            hit[hit] = self.hash[e[hit]] == h[active[hit]]
            entry[active[hit]] = e[hit]
            active = active[(e >= 0) & ~hit]
            if not len(active):
                break
        pos = np.maximum(entry, 0)
        ok = (entry >= 0) & (self.lens[pos] == lens)
        for j in range(_WORDS):
            ok &= self.words[j, pos] == words[j]
        return np.where(ok, self.ids[pos], UNK_ID).astype(np.int32)


def _bytes_and_classes(big: str, splitter: WordSplitter, lower: bool):
    """Original bytes, lower-cased bytes and the class of every byte (None: a character whose
    lower-case form has another UTF-8 length). Non-ASCII characters are decoded from their lead
    bytes, classified and lower-cased once per distinct character."""
    b0 = np.frombuffer(big.encode("utf-8", "surrogatepass"), np.uint8)
    cls = _byte_classes(b0)
    low = _lower_bytes(b0) if lower else b0
    if big.isascii():
        return b0, low, cls
    pos = np.flatnonzero(b0 >= 0xC0)  # lead bytes of multi-byte characters
    nb = 2 + (b0[pos] >= 0xE0) + (b0[pos] >= 0xF0)
    pad = np.concatenate((b0, np.zeros(3, np.uint8)))
    cp = pad[pos].astype(np.uint32) & np.where(nb == 2, 0x1F, np.where(nb == 3, 0x0F, 0x07)).astype(np.uint32)
    for k in range(1, 4):
        more = nb > k
        cp[more] = (cp[more] << 6) | (pad[pos[more] + k].astype(np.uint32) & 0x3F)
    uniq, inv = np.unique(cp, return_inverse=True)
    ucls = np.empty(len(uniq), np.uint8)
    lowtab = np.zeros((len(uniq), 4), np.uint8)
    changed = np.zeros(len(uniq), bool)
    for k, u in enumerate(uniq.tolist()):
        ch = chr(u)
        ucls[k] = splitter.char_class(u)
        if lower and u == 0x3A3:  # str.lower makes a word-final capital sigma "ς", else "σ"
            return None
        if lower and ch.lower() != ch:
            lb = ch.lower().encode("utf-8", "surrogatepass")
            if len(lb) != len(ch.encode("utf-8", "surrogatepass")):
                return None
            lowtab[k, :len(lb)] = np.frombuffer(lb, np.uint8)
            changed[k] = True
    for k in range(4):
        sel = nb > k
        cls[pos[sel] + k] = ucls[inv[sel]]
    if changed.any():  # only when lower-casing: `low` is then a fresh array
        ch_sel = changed[inv]
        for k in range(4):
            sel = ch_sel & (nb > k)
            low[pos[sel] + k] = lowtab[inv[sel], k]
    return b0, low, cls


def _any_in(flags: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether any of ``flags`` is set in each ``[s, e)`` (non-empty, increasing, disjoint)."""
    if not len(starts):
        return np.zeros(0, bool)
    if ends[-1] >= len(flags):
        flags = np.append(flags, False)
    idx = np.empty(2 * len(starts), np.int64)
    idx[0::2], idx[1::2] = starts, ends
    return np.logical_or.reduceat(flags, idx)[0::2]


class Spans(NamedTuple):
    """Where the tokens of a joined buffer are (``token_spans``)."""

    b0: np.ndarray  # the UTF-8 bytes
    low: np.ndarray  # the same lower-cased (``b0`` itself without lower-casing)
    cs: np.ndarray  # chunks (runs of non-space characters): bytes [cs, ce)
    ce: np.ndarray
    routed: np.ndarray  # per chunk: to be split by the Rust pre-tokenizer (``WordSplitter.split``)
    ts: np.ndarray  # the tokens of the other chunks: bytes [ts, te) of ``low``, in chunk ``tchunk``
    te: np.ndarray
    tchunk: np.ndarray


def token_spans(big: str, splitter: WordSplitter, lower: bool) -> Spans | None:
    """Chunks and tokens of ``big`` (after ``rules.join_rules``) without the regex: a token is a
    run of word characters or one other character. That is exact unless the chunk has an
    apostrophe or a ``.``/``,`` between word characters: those chunks are ``routed`` (to Rust).
    ``None`` when the fast path cannot (see ``_bytes_and_classes``)."""
    got = _bytes_and_classes(big, splitter, lower)
    if got is None:
        return None
    b0, low, cls = got
    n = len(b0)
    nsp = np.zeros(n + 2, bool)  # not space, with a space either side
    ns = nsp[1:-1]
    np.not_equal(cls, _C_SPACE, out=ns)
    edges = np.flatnonzero(nsp[1:] != nsp[:-1])
    cs, ce = edges[0::2], edges[1::2]
    other = cls == _C_OTHER
    if not big.isascii():  # one other character is one token, however many bytes it has
        other &= (b0 & 0xC0) != 0x80
    tstart = np.ones(n, bool)
    np.not_equal(cls[1:], cls[:-1], out=tstart[1:])
    tstart |= other
    tstart &= ns
    ts = np.flatnonzero(tstart)
    routed = np.zeros(len(cs) + 1, bool)
    apos = np.flatnonzero(b0 == 0x27)
    curly = np.flatnonzero(b0[2:] == 0x99) + 2
    curly = curly[(b0[curly - 1] == 0x80) & (b0[curly - 2] == 0xE2)]
    punct = np.flatnonzero((b0[1:-1] == 0x2E) | (b0[1:-1] == 0x2C)) + 1
    punct = punct[(cls[punct - 1] == _C_WORD) & (cls[punct + 1] == _C_WORD)]
    for pos in (apos, curly, punct):
        routed[np.searchsorted(cs, pos, side="right") - 1] = True
    routed = routed[:-1]
    tchunk = np.cumsum(~nsp[ts]) - 1  # chunk of each token: a token after a space starts one
    te = np.empty_like(ts)  # tokens tile their chunk: one ends where the next starts...
    te[:-1], te[-1:] = ts[1:], n
    np.minimum(te, ce[tchunk], out=te)  # ...or where its chunk ends
    keep = ~routed[tchunk]
    return Spans(b0, low, cs, ce, routed, ts[keep], te[keep], tchunk[keep])


def encode_joined(big: str, n_texts: int, table: VocabTable, cfg: R.RuleConfig):
    """Ids and per-text lengths of ``big`` (texts joined by ``rules._SEP``, after
    ``rules.join_rules``): the rest of the word pipeline. ``None`` when the fast path cannot."""
    sp = token_spans(big, table, cfg.lower)
    if sp is None:
        return None
    b0, low, cs, ce, routed, ts, te, tchunk = sp
    tlen = te - ts
    # case markers from the original bytes (rules._case_bytes)
    marker = np.full(len(cs), -1, np.int32)
    if cfg.case and cfg.lower and len(cs):
        c0, clen = b0[cs], ce - cs
        fu = np.flatnonzero((c0 >= 65) & (c0 <= 90) & (clen > 1))
        has_lo = _any_in((b0 >= 97) & (b0 <= 122), cs[fu], ce[fu])
        has_up = _any_in((b0 >= 65) & (b0 <= 90), cs[fu] + 1, ce[fu])
        marker[fu[~has_lo]] = UP_ID
        marker[fu[has_lo & ~has_up]] = MAJ_ID
    # ids: keyed lookup, the dict for long tokens, Rust for routed chunks
    tids = np.zeros(len(ts), np.int32)
    short = np.flatnonzero(tlen <= MAX_KEYED)
    buf = np.concatenate((low, np.zeros(MAX_KEYED + 8, np.uint8)))
    words, h = word_keys(buf, ts[short], tlen[short])
    tids[short] = table.lookup(words, h, tlen[short])
    raw = low.tobytes()
    get = table.stoi.get
    for k in np.flatnonzero(tlen > MAX_KEYED).tolist():
        tids[k] = get(raw[ts[k]:te[k]].decode("utf-8", "surrogatepass"), UNK_ID)
    ntok = np.bincount(tchunk, minlength=len(cs)).astype(np.int64)
    rest = np.flatnonzero(routed)
    rest_ids = table.chunk_ids([raw[s:e] for s, e in zip(cs[rest].tolist(), ce[rest].tolist())])
    ntok[rest] = [len(ids) for ids in rest_ids]
    extra = [i for ids in rest_ids for i in ids]
    has_m = (marker >= 0).astype(np.int64)
    counts = ntok + has_m
    # where everything goes: per text [bos] chunks... [eos]; per chunk [marker] tokens...
    bos, eos = int(cfg.add_bos), int(cfg.add_eos)
    bumps = np.zeros(len(cs) + 1, np.int64)  # text of each chunk: separators before it
    np.add.at(bumps, np.searchsorted(cs, np.flatnonzero(b0 == 0)), 1)
    tix = np.cumsum(bumps[:-1])
    per_text = np.bincount(tix, weights=counts, minlength=n_texts).astype(np.int64) + bos + eos
    text_off = np.cumsum(per_text) - per_text
    first_slot = np.cumsum(counts) - counts + (tix + 1) * bos + tix * eos + has_m
    out = np.empty(int(per_text.sum()), np.int32)
    if bos:
        out[text_off] = BOS_ID
    if eos:
        out[text_off + per_text - 1] = EOS_ID
    m = has_m > 0
    out[first_slot[m] - 1] = marker[m]
    kept = np.bincount(tchunk, minlength=len(cs))
    rank = np.arange(len(ts)) - (np.cumsum(kept) - kept)[tchunk]  # token's place in its chunk
    out[first_slot[tchunk] + rank] = tids
    if len(rest):
        n_rest = ntok[rest]
        within = np.arange(int(n_rest.sum())) - np.repeat(np.cumsum(n_rest) - n_rest, n_rest)
        out[np.repeat(first_slot[rest], n_rest) + within] = np.array(extra, np.int32)
    return out, per_text


# --- several processes for a large batch ---------------------------------------------------------
PARALLEL_CHARS = 1_000_000


def pick_workers(texts: list[str], workers: int | None) -> int:
    """``workers`` if given, else one per core (at most 4) for batches of ``PARALLEL_CHARS``+;
    always 1 where fork is unavailable or inside a daemonic process (a DataLoader worker)."""
    if not can_fork():
        return 1
    if workers is not None:
        return max(1, min(int(workers), len(texts)))
    if sum(map(len, texts)) < PARALLEL_CHARS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores, len(texts)))


def even_bounds(texts: list[str], n: int) -> list[tuple[int, int]]:
    """``n`` contiguous, non-empty slices ``texts[lo:hi]`` of about equal characters."""
    chars = np.cumsum([len(t) for t in texts])
    cuts = np.searchsorted(chars, chars[-1] * np.arange(1, n) / n).tolist()
    return [b for b in zip([0, *cuts], [*cuts, len(texts)]) if b[1] > b[0]]


#: characters per piece in one process (twice as fast as one pass over a whole corpus)
PIECE_CHARS = 1 << 20


def piece_bounds(texts: list[str]) -> list[tuple[int, int]]:
    """Slices of ``texts`` of about ``PIECE_CHARS`` characters (a longer text is one piece)."""
    return even_bounds(texts, max(1, -(-sum(map(len, texts)) // PIECE_CHARS))) if texts else []


def fork_map(fn, texts: list[str], n: int):
    """``fn`` (texts -> (ids, lengths)) over ``n`` slices (``fork_parts``), concatenated."""
    parts = fork_parts(fn, texts, n)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fork_parts(fn, texts: list[str], n: int) -> list:
    """``fn`` over ``n`` contiguous slices of about equal characters, results in order: the first
    in this process, the others in forked children (``ulmfit.forked.fork_each``)."""
    bounds = even_bounds(texts, n)
    return fork_each(lambda k: fn(texts[bounds[k][0]:bounds[k][1]]), len(bounds))
