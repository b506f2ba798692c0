"""Special tokens and their fixed ids (fastai's order, so fastai vocabularies line up).

Source of the order: fastai ``text/core.py`` (``defaults.text_spec_tok``).
"""

UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = (
    "xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj")
SPECIAL_TOKENS = [UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ]
UNK_ID, PAD_ID, BOS_ID, EOS_ID, FLD_ID, REP_ID, WREP_ID, UP_ID, MAJ_ID = range(9)
