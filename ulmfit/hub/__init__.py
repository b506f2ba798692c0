"""Hugging Face Hub: export a run as a transformers-loadable folder, its model card, its
``trust_remote_code`` files, ONNX, and push. Reading an export back is the text layer's job
(``ulmfit.text.awd_lstm.hub_format``); its loaders are re-exported here for convenience."""

from ulmfit.hub.export import export_run, export_to_hub, push
from ulmfit.text.awd_lstm.hub_format import is_exported, load_exported_classifier, load_exported_lm

__all__ = ["export_run", "export_to_hub", "push", "is_exported", "load_exported_classifier", "load_exported_lm"]
