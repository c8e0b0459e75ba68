"""An evaluation and regression-testing harness for fine-tuned LLMs."""

__version__ = "0.1.0"
