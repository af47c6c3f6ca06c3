"""The `monitor` component: data drift of a recent window against the training baseline."""
