"""The named choices of the text backends' options, in a module that imports nothing heavy: a recipe
is checked against them when it is read (`ulmfit.phases.config`), and reading a recipe or printing
`ulmfit --help` should not load torch."""

VECTOR_LAYOUTS = ("concat", "project")   # model.vectors.layout (text/awd_lstm/vectors.py)
LONG_DOCS = ("truncate", "windows")      # model.long_docs (text/transformers/data.py)
CONTRASTIVE_LOSSES = ("supcon", "pairs")  # contrastive.loss (text/transformers/contrastive.py)
DISTIL_LOSSES = ("kl", "mse")            # classifier.distil.loss (core/distillation.py SOFT_LOSSES)
PROBE_HEADS = ("logistic", "centroid", "auto")  # linear_probe.head (text/transformers/linear_probe.py)
