"""``leanse compare``: leanse models, their exits and compressed variants, and peers, on the same
files, with quality, cost, plots and a self-contained listening page (``report.html``)."""

from leanse.compare.run import Comparison, compare_models
from leanse.compare.systems import LOADERS, Loader, System, load_system

__all__ = ["Comparison", "compare_models", "LOADERS", "Loader", "System", "load_system"]
