"""ULMFiT / fastai pre-processing rules, as pure functions on strings.

Behaviour follows fastai ``text/core.py`` (``fix_html``, ``replace_rep``, ``replace_wrep``,
``replace_all_caps``, ``replace_maj``, ``lowercase``); the regexes are fastai's where noted.

Two implementations of the same rules:

* the *reference* functions (``fix_html``, ``replace_rep``, ``replace_wrep``, ``replace_all_caps``,
  ``replace_maj``, ``lowercase``), one compiled regex over a whole text each, used by
  ``apply_rules`` (subword tokenizers, single texts, tests);
* the *fast batch path* ``preprocess_batch``: the texts of a batch are joined into one buffer and
  the character-repeat and case rules run as numpy array operations over its UTF-8 bytes, so
  Python never loops over words. Word repeats (``xxwrep``) are then found on token ids after the
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


def _rep_bytes(b: np.ndarray) -> np.ndarray:
    """Character-repeat rule on a byte buffer (ASCII characters only)."""
    if len(b) < 3:
        return b
    trip = np.flatnonzero((b[2:] == b[1:-1]) & (b[1:-1] == b[:-2]))  # cheap pre-check
    if not len(trip) or (_SPACE[b[trip]] | (b[trip] >= 128)).all():
        return b
    eq = (b[1:] == b[:-1]) & ~_SPACE[b[1:]] & (b[1:] < 128)
    d = np.diff(np.concatenate(([0], eq.view(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    keep = (ends - starts) >= 2
    if not keep.any():
        return b
    raw, out, prev = b.tobytes(), [], 0
    for s, e in zip(starts[keep].tolist(), ends[keep].tolist()):  # run is raw[s:e+1]
        out.append(raw[prev:s])
        out.append(b" %s %d %s " % (TK_REP.encode(), e - s + 1, raw[s:s + 1]))
        prev = e + 1
    out.append(raw[prev:])
    return np.frombuffer(b"".join(out), np.uint8)


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


def join_rules(texts: list[str], cfg: RuleConfig) -> str:
    """The texts joined by ``_SEP`` (NUL inside a text becomes a space) after the rules that
    rewrite characters: ``fix_html`` and ``xxrep``. Shared by both word-level fast paths."""
    big = _SEP.join(texts)
    if _SEP in big and big.count(_SEP) != len(texts) - 1:
        big = _SEP.join(t.replace(_SEP, " ") for t in texts)
    if cfg.fix_html:
        big = fix_html(big)
    if cfg.rep:
        b = np.frombuffer(big.encode("utf-8", "surrogatepass"), np.uint8)
        r = _rep_bytes(b)
        if r is not b:
            big = r.tobytes().decode("utf-8", "surrogatepass")
    return big


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
