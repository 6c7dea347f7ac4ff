"""Reading the training logs people already have: TensorBoard event files, MMCV/MMEngine JSON and
text logs, Hugging Face ``trainer_state.json``, Lightning/Keras/YOLO CSV, DETR ``log.txt`` and
plain-text ``key: value`` logs, each into a trainatlas run (see ``core.ingest_file``)."""

from trainatlas.ingest.core import IngestResult, ingest_file, ingest_paths, run_id_for
from trainatlas.ingest.detect import sniff
from trainatlas.ingest.discover import discover, wait_for_log

__all__ = ["IngestResult", "discover", "ingest_file", "ingest_paths", "run_id_for", "sniff", "wait_for_log"]
