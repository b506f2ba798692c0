"""The byte-level ``fix_html`` / ``xxrep`` of ``rules.join_rules`` give exactly the reference's text:
``fix_html`` (on str), then the repeat rule for ASCII characters (a regex, below)."""
import html
import random
import re

import pandas as pd
import pytest

from ulmfit.text.tokenize import rules as R
from ulmfit.text.data.readers import split_wikitext_articles
from ulmfit.text.tokenize.special import TK_REP
from cli_helpers import DATA

# xxrep as the fast path defines it: 3+ times one ASCII character other than NUL, \t\n\v\f\r, space
_re_rep_ascii = re.compile(r"([^\x00\t\n\x0b\x0c\r \x80-\U0010ffff])\1{2,}")

CFGS = [R.RuleConfig(), R.RuleConfig(rep=False), R.RuleConfig(fix_html=False)]
FIXTURE = [
    "", "aaa", "aa", "a", "...", "....", ".....", "......", "aaa...bbb", "..aaa..", "x...", "...x",
    "😀😀😀", "ééé", "日日日日", "\U00040000\U00040000", "é...", "\ud800\ud800\ud800",
    "\ud83d\ude00\ud83d\ude00", "\x1c\x1c\x1c", "\x00\x00\x00", "\t\t\t", "   ", "1000000",
    "!!!!!!", "?!?!", "--- @-@ ---", "a-- @-@ --b", ".. @.@ ..", " @.@  @.@  @.@ ",
    "x @-@ y @,@ z @.@ w", " @-@ @-@ ", " @-@ @,@ @.@ ", " @,@ @-@ ", "@-@", " @-@", "@-@ ",
    " @-@ ", " @,@ ", " @.@ ", " @ ", "@@@", " @@@ ",
    "<unk>", "<unk><unk><unk>", "<<unk>>", "<br />", "<br /><br />", "<br<br />/>", "<brnbsp;/>",
    "#39;", "&#39;", "#146;#39;#36;", "amp;amp;", "&amp;amp;", "&amp;lt;", "&amp", "&ampamp;", "&&&",
    "& amp;", "&#0;", "&#55296;", "&#x1F600;", "&#1114112;", "&#128512;", "&#X41;&#x41", "&#",
    "&#x", "&;", "&notin;", "&notit;", "&not", "&noté", "&amp" + "é" * 40, "&" + "a" * 40 + ";",
    "&" + "é" * 40, "&CounterClockwiseContourIntegral;", "&CounterClockwiseContourIntegral",
    "&lt&gt&quot", "&lt;&gt;&quot;&#39;&amp;", "&hellip;&hellip;&hellip;", "&period;&period;&period;",
    "a&#97;a", "&#46;..", "nbsp;nbsp;nbsp;", "\\n\\n\\n", '\\"\\"\\"', "\\\\n", "quot;quot;",
    "x\x00y", "aaa\x00aaa", "aa\x00a", "end aaa", "aaa start",
]


def reference_join(texts: list[str], cfg: R.RuleConfig) -> str:
    big = R._SEP.join(texts)
    if R._SEP in big and big.count(R._SEP) != len(texts) - 1:
        big = R._SEP.join(t.replace(R._SEP, " ") for t in texts)
    if cfg.fix_html:
        big = R.fix_html(big)
    if cfg.rep:
        big = _re_rep_ascii.sub(lambda m: f" {TK_REP} {len(m.group(0))} {m.group(1)} ", big)
    return big


def _check(texts):
    for cfg in CFGS:
        assert R.join_rules(texts, cfg) == reference_join(texts, cfg), cfg


def test_charref_regex_is_the_running_pythons():
    assert R._re_charref_b.pattern == html._charref.pattern.encode()


def test_wikitext2_train():
    arts = split_wikitext_articles((DATA / "wikitext-2" / "train.txt").read_text(encoding="utf-8"))
    cfg = R.RuleConfig()
    assert R.join_rules(arts, cfg) == reference_join(arts, cfg)


def test_imdb_reviews_with_html():
    texts = pd.read_csv(DATA / "imdb" / "test.csv")["text"].astype(str).tolist()[:2000]
    assert any("<br />" in t for t in texts)
    _check(texts)
    for t in texts[:300]:  # short inputs take another branch
        assert R.fix_html_bytes(t.encode()) == R.fix_html(t).encode()


@pytest.mark.parametrize("few", [0, 32])  # 0: byte positions from numpy, also for short texts
def test_hand_written_cases(monkeypatch, few):
    monkeypatch.setattr(R._positions, "__defaults__", (few,))
    _check(FIXTURE)
    for t in FIXTURE:
        _check([t])
        raw = t.encode("utf-8", "surrogatepass")
        assert R.fix_html_bytes(raw).decode("utf-8", "surrogatepass") == R.fix_html(t), t
    _check([""])
    _check(["", ""])
    _check([])


def test_patterns_at_the_ends_of_a_long_buffer():  # long: occurrences found with numpy
    for a, *_ in R._HTML_B:
        a = a.decode()
        _check(["y" * (1 << 14) + a])
        _check([a + "y" * (1 << 14)])
        _check(["y" * (1 << 14), a])


def test_nothing_to_do_returns_the_same_objects():
    raw = b"plain text, nothing to fix"
    assert R.fix_html_bytes(raw) is raw and R.rep_bytes(raw) is raw
    texts = ["plain", "text"]
    assert R.join_rules(texts, R.RuleConfig()) == "plain\x00text"


def test_random_mixes_of_the_patterns():
    atoms = [a for a in FIXTURE if len(a) < 12] + list("aé .@&-\x00#;<>") + ["amp"]
    rng = random.Random(0)
    for _ in range(1500):
        n = rng.randint(1, 3)
        _check(["".join(rng.choice(atoms) for _ in range(rng.randint(0, 10))) for _ in range(n)])
    big = ["".join(rng.choice(atoms) for _ in range(3000)) for _ in range(4)]  # the numpy branches
    _check(big)
