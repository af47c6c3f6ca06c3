"""The online prediction service: Feast online features plus the registry's champion, over
HTTP (the Vertex AI custom-container contract and the Open Inference Protocol v2).

Not a pipeline component (no spec): a long-running server in the same image,
`python -m portside.components serve` (or `portside serve` locally).
"""
