"""ULMFiT / fastai pre-processing rules, as pure functions on strings.

Behaviour follows fastai ``text/core.py`` (``fix_html``, ``replace_rep``, ``replace_wrep``,
``replace_all_caps``, ``replace_maj``, ``lowercase``); the regexes are fastai's where noted.

Two implementations of the same rules:

* the *reference* functions (``fix_html``, ``replace_rep``, ``replace_wrep``, ``replace_all_caps``,
  ``replace_maj``, ``lowercase``), one compiled regex over a whole text each, used by
  ``apply_rules`` (subword tokenizers, single texts, tests);
* the *fast batch path* ``preprocess_batch``: the texts of a batch are joined into one buffer and
  ``fix_html``, the character-repeat and case rules run on its UTF-8 bytes (numpy), so Python
  never loops over words. Word repeats (``xxwrep``) are then found on token ids after the
  Rust tokenizer (``wrep_ids``), again with numpy.

Documented differences of the fast path from fastai (and from the reference functions):

* ``xxrep`` only for ASCII characters (fastai: any non-space character);
* ``xxwrep`` works on lower-cased word tokens after splitting, so ``"ah ah ah"`` is caught but
  ``"The the the"`` (whose tokens are ``xxmaj the the the``) is not either way;
* for the case rules, any Unicode whitespace separates words (other than ASCII's usual six it
  becomes a space first).
The case rules, like fastai's, only look at ASCII capitals ``A-Z`` (so ``"École"`` is just
lower-cased) and at whitespace-delimited words (so ``"Hello,"`` gets ``xxmaj`` but ``"(Hello"`` not).
"""
from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass
from html.entities import html5

import numpy as np

from ulmfit.text.tokenize.special import BOS, EOS, FLD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK

# --- word splitting (applied by the Rust pre-tokenizer, see tokenizer.py) -------------------------
#: One token = a number with inner ``.``/``,`` ("1,000", "3.5"), a word with inner apostrophes
#: ("don't"), a detached clitic ("'s", "'t"), or one punctuation character. Whitespace separates.
WORD_PATTERN = r"\d+(?:[.,]\d+)+|\w+(?:['’]\w+)*|['’](?:s|re|ve|ll|d|m|t)(?!\w)|[^\w\s]"
_word_re = re.compile(WORD_PATTERN)


def split_words(text: str) -> list[str]:
    """Python version of the pre-tokenizer's split (for tests and debugging)."""
    return _word_re.findall(text)


# --- rule settings ----------------------------------------------------------------------------
@dataclass
class RuleConfig:
    """Which rules run; saved as JSON next to ``tokenizer.json``."""

    fix_html: bool = True
    rep: bool = True
    wrep: bool = True
    case: bool = True  # xxup / xxmaj markers (needs lower)
    lower: bool = True
    add_bos: bool = True
    add_eos: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RuleConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# --- reference rules (fastai regexes) ---------------------------------------------------------
_HTML = [("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"),
         ("\\n", "\n"), ("quot;", "'"), ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK)]
_re_wiki = re.compile(r" @([.,-])@ ")  # WikiText's " @-@ ", " @,@ ", " @.@ ": one pass for the three


def fix_html(x: str) -> str:
    """HTML leftovers and WikiText escapes (fastai's list plus `` @,@ `` -> ``,``)."""
    for a, b in _HTML:
        if a in x:
            x = x.replace(a, b)
    if " @" in x:
        x = _re_wiki.sub(r"\1", x)
    if "..." in x:
        x = x.replace("...", " …")
    return html.unescape(x) if "&" in x else x


_re_rep = re.compile(r"(\S)(\1{2,})")  # fastai


def replace_rep(t: str) -> str:
    """``cccc`` -> `` xxrep 4 c `` for a character repeated 3+ times."""
    return _re_rep.sub(lambda m: f" {TK_REP} {len(m.group(2)) + 1} {m.group(1)} ", t)


_re_wrep = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")  # fastai


def replace_wrep(t: str) -> str:
    """``w w w w`` -> `` xxwrep 4 w `` for a word repeated 3+ times."""
    def _sub(m):
        c, cc, e = m.groups()
        return f" {TK_WREP} {len(cc.split()) + 2} {c} {e}"
    return _re_wrep.sub(_sub, t)


_re_all_caps = re.compile(r"(\s|^)([A-Z]+[^a-z\s]*)(?=(\s|$))")  # fastai
_re_maj = re.compile(r"(\s|^)([A-Z][^A-Z\s]*)(?=(\s|$))")  # fastai


def replace_all_caps(t: str) -> str:
    """``HELLO`` -> ``xxup hello`` (words of 2+ characters)."""
    def _sub(m):
        tok = f"{TK_UP} " if len(m.group(2)) > 1 else ""
        return f"{m.group(1)}{tok}{m.group(2).lower()}"
    return _re_all_caps.sub(_sub, t)


def replace_maj(t: str) -> str:
    """``Hello`` -> ``xxmaj hello`` (words of 2+ characters)."""
    def _sub(m):
        tok = f"{TK_MAJ} " if len(m.group(2)) > 1 else ""
        return f"{m.group(1)}{tok}{m.group(2).lower()}"
    return _re_maj.sub(_sub, t)


def lowercase(t: str, add_bos: bool = True, add_eos: bool = False) -> str:
    """Lower-case, strip, and add ``xxbos`` (and optionally ``xxeos``)."""
    return (f"{BOS} " if add_bos else "") + t.lower().strip() + (f" {EOS}" if add_eos else "")


def join_fields(fields: list[str], mark_fields: bool | None = None) -> str:
    """Join several text columns: ``xxfld 1 a xxfld 2 b`` (fastai's ``_join_texts``)."""
    if mark_fields is None:
        mark_fields = len(fields) > 1
    if not mark_fields:
        return " ".join(fields)
    return " ".join(f"{FLD} {i + 1} {f}" for i, f in enumerate(fields))


def apply_rules(t: str, cfg: RuleConfig | None = None) -> str:
    """The reference pipeline on one text (fastai order; ``spec_add_spaces`` is not needed
    because the word splitter separates ``/``, ``#`` and ``\\`` anyway)."""
    cfg = cfg or RuleConfig()
    if cfg.fix_html:
        t = fix_html(t)
    if cfg.rep:
        t = replace_rep(t)
    if cfg.wrep:
        t = replace_wrep(t)
    if cfg.case and cfg.lower:
        t = replace_maj(replace_all_caps(t))
    if cfg.lower:
        return lowercase(t, cfg.add_bos, cfg.add_eos)
    return (f"{BOS} " if cfg.add_bos else "") + t.strip() + (f" {EOS}" if cfg.add_eos else "")


# --- fast batch path (numpy over UTF-8 bytes) -------------------------------------------------
_SEP = "\x00"  # joins the texts of a batch; counts as whitespace
_SPACE = np.zeros(256, bool)
_SPACE[[0, 9, 10, 11, 12, 13, 32]] = True
_UPB, _MAJB = b"xxup ", b"xxmaj "


def _case_bytes(b: np.ndarray) -> np.ndarray:
    """Insert ``xxup ``/``xxmaj `` before ALL-CAPS / Capitalized whitespace words (fastai rules)."""
    sp = _SPACE[b]
    up = (b >= 65) & (b <= 90)
    lo = (b >= 97) & (b <= 122)
    prev_sp = np.concatenate(([True], sp[:-1]))
    next_sp = np.concatenate((sp[1:], [True]))
    starts = np.flatnonzero(~sp & prev_sp)
    first_up = up[starts]
    starts = starts[first_up]
    if len(starts) == 0:
        return b
    ends = np.flatnonzero(~sp & next_sp)[first_up] + 1
    cu = np.concatenate(([0], np.cumsum(up, dtype=np.int32)))
    cl = np.concatenate(([0], np.cumsum(lo, dtype=np.int32)))
    n_lo = cl[ends] - cl[starts]
    n_up_rest = cu[ends] - cu[starts + 1]
    long = (ends - starts) > 1
    caps = starts[long & (n_lo == 0)]
    maj = starts[long & (n_lo > 0) & (n_up_rest == 0)]
    idx = np.concatenate((np.repeat(caps, len(_UPB)), np.repeat(maj, len(_MAJB))))
    vals = np.concatenate((np.tile(np.frombuffer(_UPB, np.uint8), len(caps)),
                           np.tile(np.frombuffer(_MAJB, np.uint8), len(maj))))
    return np.insert(b, idx, vals)


_re_odd_space = re.compile(r"[^\S\t\n\x0b\x0c\r ]")  # whitespace other than ASCII's usual six


def _odd_space(t: str) -> bool:
    return not t.isascii() or any(c in t for c in "\x1c\x1d\x1e\x1f")


# --- fix_html and xxrep on UTF-8 bytes (join_rules) ------------------------------------------
# Every pattern is ASCII and an ASCII byte of UTF-8 (``surrogatepass`` included) is always that
# character, so matches on the bytes are the matches on the text: decoded, the output is the
# reference's. A step runs only where its pattern occurs, found from a rare byte of the pattern
# (``bytes.find`` scans the whole buffer for each absent pattern), and splices the buffer once.
_ANCHORS = b";\\<"  # each _HTML pattern holds one of these
# (pattern, replacement (never empty: see _fix_html_triples), its anchor, where the anchor is)
_HTML_B = [(a, r, c, a.index(c)) for a, r in ((a.encode(), r.encode()) for a, r in _HTML)
           for c in [next(c for c in _ANCHORS if c in a)]]
_HTML5_B = {k.encode("ascii"): v.encode("utf-8") for k, v in html5.items()}
# html's ``_charref`` regex, on bytes (a test checks it against the running Python's)
_re_charref_b = re.compile(rb"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_ELLIPSIS = " …".encode()  # fix_html's "..."
_REP_OK = ~_SPACE & (np.arange(256) < 128)  # bytes xxrep looks at: ASCII, not space
_TK_REP_B = TK_REP.encode()
_BYTE = [bytes((i,)) for i in range(256)]


def _positions(raw: bytes, b: np.ndarray, c: int, few: int = 32) -> np.ndarray:
    """Where the byte ``c`` is: ``bytes.find`` while it is rare, else numpy."""
    out, i = [], raw.find(_BYTE[c])
    while i >= 0 and len(out) < few:
        out.append(i)
        i = raw.find(_BYTE[c], i + 1)
    return np.array(out, dtype=np.intp) if i < 0 else np.flatnonzero(b == c)


def _occurrences(b: np.ndarray, at: np.ndarray, pat: bytes, k: int) -> np.ndarray:
    """All starts (overlapping too) of ``pat`` in ``b``, from the positions ``at`` of ``pat[k]``."""
    s = at - k
    s = s[(s >= 0) & (s <= len(b) - len(pat))]
    for i, c in enumerate(pat):
        if i != k and len(s):
            s = s[b[s + i] == c]
    return s


def _leftmost(starts: np.ndarray, width: int) -> np.ndarray:
    """The occurrences ``str.replace`` / ``re.sub`` rewrite: leftmost first, never overlapping."""
    if len(starts) < 2 or (np.diff(starts) >= width).all():
        return starts
    keep, nxt = [], -1
    for x in starts.tolist():
        if x >= nxt:
            keep.append(x)
            nxt = x + width
    return np.array(keep, dtype=starts.dtype)


def _splice(raw: bytes, starts: np.ndarray, ends: np.ndarray, reps: list[bytes]) -> bytes:
    """``raw`` with each ``raw[starts[i]:ends[i]]`` (sorted, disjoint) replaced by ``reps[i]``."""
    if not len(starts):
        return raw
    out: list = [None] * (2 * len(starts) + 1)  # the pieces between, and the replacements
    out[::2] = map(raw.__getitem__, map(slice, [0] + ends.tolist(), starts.tolist() + [len(raw)]))
    out[1::2] = reps
    return b"".join(out)


def _html_present(raw: bytes) -> list[bool]:
    """Which ``_HTML`` patterns occur in ``raw``."""
    if len(raw) < 1 << 14:  # a few scans of a short text cost less than numpy
        return [a in raw for a, *_ in _HTML_B]
    b = np.frombuffer(raw, np.uint8)
    at = {c: _positions(raw, b, c) for c in _ANCHORS}
    return [len(at[c]) > 0 and len(_occurrences(b, at[c], a, k)) > 0 for a, _, c, k in _HTML_B]


def _wiki_bytes(raw: bytes) -> bytes:
    """``_re_wiki.sub(r"\\1", ...)``: `` @-@ `` -> ``-`` (and ``,`` ``.``)."""
    b = np.frombuffer(raw, np.uint8)
    at = _positions(raw, b, 64)  # "@"
    s = at[(at >= 1) & (at + 3 < len(b))]
    s = s[(b[s - 1] == 32) & (b[s + 2] == 64) & (b[s + 3] == 32)
          & ((b[s + 1] == 44) | (b[s + 1] == 45) | (b[s + 1] == 46))]  # " @[,-.]@ "
    s = _leftmost(s - 1, 5)
    return _splice(raw, s, s + 5, list(map(_BYTE.__getitem__, b[s + 2].tolist())))


def _triples(b: np.ndarray) -> np.ndarray:
    """Positions ``t`` with ``b[t] == b[t + 1] == b[t + 2]``."""
    eq = b[1:] == b[:-1]
    return np.flatnonzero(eq[1:] & eq[:-1])


def _charref_bytes(m: re.Match) -> bytes:
    """html's ``_replace_charref`` on bytes. A numeric reference is ASCII; of a named one, the
    longest prefix that names an entity is replaced (names are ASCII: bytes and text agree)."""
    s = m.group(1)
    if s[:1] == b"#":
        return html.unescape(m.group(0).decode("ascii")).encode("utf-8")
    if s in _HTML5_B:
        return _HTML5_B[s]
    for x in range(len(s) - 1, 1, -1):
        if s[:x] in _HTML5_B:
            return _HTML5_B[s[:x]] + s[x:]
    return m.group(0)


def _unescape_bytes(raw: bytes) -> bytes:
    """``html.unescape`` on bytes; ``raw`` itself when no reference changes anything. Every
    ``&`` starts a try of the regex (a match never holds a second one)."""
    i = raw.find(b"&")
    while i >= 0:
        m = _re_charref_b.match(raw, i)
        if m and _charref_bytes(m) != m.group(0):
            return _re_charref_b.sub(_charref_bytes, raw)
        i = raw.find(b"&", i + 1)
    return raw


def _fix_html_triples(raw: bytes) -> tuple[bytes, np.ndarray | None]:
    """``fix_html_bytes`` and the triples of its result that ``rep_bytes`` needs (None: unknown)."""
    present = _html_present(raw)
    made = set()  # bytes written: a pattern absent at first can only be made with one of them
    for (a, r, _, _), there in zip(_HTML_B, present) if any(present) else ():
        if (there or made.intersection(a)) and a in raw:
            raw = raw.replace(a, r)
            made.update(r)
    if b" @" in raw:
        raw = _wiki_bytes(raw)
    b = np.frombuffer(raw, np.uint8)
    t = _triples(b)
    dot = b[t] == 46
    if dot.any():  # "..." -> " …": 3+ dots in a row leave at most 2 (after "…"); others move
        s = _leftmost(t[dot], 3)
        raw = _splice(raw, s, s + 3, [_ELLIPSIS] * len(s))
        t = t[~dot]
        t += np.searchsorted(s, t)  # each " …" is one byte longer than the "..." it replaces
    new = _unescape_bytes(raw)
    return new, (t if new is raw else None)


def fix_html_bytes(raw: bytes) -> bytes:
    """``fix_html`` on UTF-8 bytes: ``fix_html_bytes(s.encode()) == fix_html(s).encode()`` (with
    ``surrogatepass``). Returns ``raw`` itself when nothing changes."""
    return _fix_html_triples(raw)[0]


def rep_bytes(raw: bytes, triples: np.ndarray | None = None) -> bytes:
    """The character-repeat rule for ASCII characters: a run ``cccc`` (3+ times a non-space ASCII
    byte) becomes `` xxrep 4 c ``. ``triples``: ``_triples(raw)`` when known (those of bytes the
    rule skips may be missing). Returns ``raw`` itself when there is no run."""
    b = np.frombuffer(raw, np.uint8)
    t = _triples(b) if triples is None else triples
    t = t[_REP_OK[b[t]]]
    if not len(t):
        return raw
    first = np.flatnonzero(np.diff(t, prepend=-2) != 1)  # consecutive triples: one run
    s, e = t[first], t[np.append(first[1:] - 1, len(t) - 1)] + 3
    reps = [b" %s %d %s " % (_TK_REP_B, n, _BYTE[c]) for n, c in zip((e - s).tolist(), b[s].tolist())]
    return _splice(raw, s, e, reps)


def join_rules(texts: list[str], cfg: RuleConfig) -> str:
    """The texts joined by ``_SEP`` (NUL inside a text becomes a space) after the rules that
    rewrite characters: ``fix_html`` and ``xxrep``, both on the UTF-8 bytes of the whole batch
    (``fix_html_bytes``, ``rep_bytes``). Shared by both word-level fast paths."""
    big = _SEP.join(texts)
    if _SEP in big and big.count(_SEP) != len(texts) - 1:
        big = _SEP.join(t.replace(_SEP, " ") for t in texts)
    if not (cfg.fix_html or cfg.rep):
        return big
    raw = big.encode("utf-8", "surrogatepass")
    new, triples = _fix_html_triples(raw) if cfg.fix_html else (raw, None)
    if cfg.rep:
        new = rep_bytes(new, triples)
    return big if new is raw else new.decode("utf-8", "surrogatepass")


def preprocess_batch(texts: list[str], cfg: RuleConfig | None = None) -> list[str]:
    """All rules except ``xxwrep`` on a batch of texts, vectorised (see module docstring).

    Returns the rule-processed texts (lower-cased, with ``xxbos``) ready for the Rust tokenizer.
    """
    cfg = cfg or RuleConfig()
    if not texts:
        return []
    big = join_rules(texts, cfg)
    if _odd_space(big):  # the case rules split words on ASCII whitespace
        big = _re_odd_space.sub(" ", big)
    if cfg.case and cfg.lower:
        b = _case_bytes(np.frombuffer(big.encode("utf-8", "surrogatepass"), np.uint8))
        big = b.tobytes().decode("utf-8", "surrogatepass")
    if cfg.lower:
        big = big.lower()
    pre = f"{BOS} " if cfg.add_bos else ""
    post = f" {EOS}" if cfg.add_eos else ""
    return [pre + t.strip() + post for t in big.split(_SEP)]


def wrep_ids(ids: np.ndarray, lengths: np.ndarray, is_word: np.ndarray, count_ids: np.ndarray,
             wrep_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Word-repeat rule on token ids: a run of 3+ equal word ids ``w`` becomes
    ``[xxwrep, id(str(n)), w]``. ``is_word[id]`` marks ids of ``\\w+`` tokens (never xxunk);
    ``count_ids[n]`` is the id of the token ``str(n)`` (xxunk when unknown; last entry reused).
    Runs never cross document boundaries. Returns new (ids, lengths)."""
    n = len(ids)
    if n < 3:
        return ids, lengths
    doc_start = np.zeros(n, bool)
    bounds = np.cumsum(lengths)[:-1]
    doc_start[bounds[bounds < n]] = True
    same = (ids[1:] == ids[:-1]) & is_word[ids[1:]] & ~doc_start[1:]
    d = np.diff(np.concatenate(([0], same.view(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)  # run = ids[s : e+1]
    keep = (ends - starts) >= 2
    if not keep.any():
        return ids, lengths
    starts, ends = starts[keep], ends[keep]
    runlen = ends - starts + 1
    # keep the last 3 positions of each run, rewrite them, drop the rest
    drop = np.zeros(n + 1, np.int32)
    np.add.at(drop, starts, 1)
    np.add.at(drop, ends - 2, -1)
    keep_mask = np.cumsum(drop[:-1]) == 0
    out = ids.copy()
    out[ends - 2] = wrep_id
    out[ends - 1] = count_ids[np.minimum(runlen, len(count_ids) - 1)]
    doc_of = np.searchsorted(np.cumsum(lengths), starts, side="right")
    new_lengths = lengths - np.bincount(doc_of, weights=runlen - 3, minlength=len(lengths)).astype(
        lengths.dtype)
    return out[keep_mask], new_lengths
