"""pushgen: personalised e-commerce push notifications written by a small fine-tuned language model.

The ``generator`` package is the importable library; the ``pushgen`` command (``generator.cli``) and the
Celery workers (``workers``) are thin skins over it.
"""

__version__ = "0.1.0"
