"""The AWD-LSTM: the model and its dropouts, the LM and classifier, saving/loading, the LM loop."""
