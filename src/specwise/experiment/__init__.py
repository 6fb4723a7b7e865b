"""An A/B experiment: its configuration, its layout on disk, the homogeneity controls, the findings
(matrix → comparisons → evidence → verdicts, pure) and the executor that runs its cells."""

from specwise.experiment.config import (ExperimentConfig, Launch, Loads, Memory, Server, Slo, Tune, Workload,
                                        load_config, parse_config, quick_config, quick_tune_config)
from specwise.experiment.controls import CONTROL_SUFFIX, ControlResult, control_cells, control_workload
from specwise.experiment.executor import CellRunner, Events, execute_experiment
from specwise.experiment.findings import (Finding, Findings, MemoryEvidence, build_findings, findings_from_disk,
                                          write_findings)
from specwise.experiment.layout import (Cells, LaunchedServer, cell_complete, cell_dir, cell_seed, load_cells,
                                        load_label, schedule, served_models, stored_config)

__all__ = ["CONTROL_SUFFIX", "CellRunner", "Cells", "ControlResult", "Events", "ExperimentConfig", "Finding",
           "Findings", "LaunchedServer", "Launch", "Loads", "Memory", "MemoryEvidence", "Server", "Slo", "Tune",
           "Workload",
           "build_findings", "cell_complete", "cell_dir", "cell_seed", "control_cells", "control_workload",
           "execute_experiment", "findings_from_disk", "load_cells", "load_config", "load_label", "parse_config",
           "quick_config", "quick_tune_config", "schedule", "served_models", "stored_config", "write_findings"]
