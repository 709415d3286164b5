"""The method's stages (method.md, "Stages of a job"), one module each, named by the job's stage.

Each stage is a function whose arguments are the hand-offs it needs and whose return value, a
frozen dataclass, is what later stages may use; progress, events and cancellation come in as a
:class:`~layerfuse.compression.progress.ProgressTracker`. :func:`layerfuse.compression.compress`
calls them in order; a benchmark can call any prefix of them and stop or branch.

======================  ===================================  =============
stage                   function                             hands on
======================  ===================================  =============
preparing               :func:`prepare`                      :class:`Prepared`
fine_tuning_teacher     :func:`fine_tune_teacher`,           :class:`Teacher`
                        :func:`keep_teacher`
evaluating_baseline     :func:`evaluate_baseline`            :class:`Baseline`
sweeping                :func:`run_sweep`                    :class:`Swept`
fusing                  :func:`fuse`                         :class:`Fused`
selecting               :func:`select_depth`                 :class:`Selected`
distilling              :func:`recover`                      :class:`Recovered`
exporting               :func:`export`,                      :class:`Exported`
                        :func:`write_outputs`
======================  ===================================  =============
"""

from __future__ import annotations

from .distilling import Recovered, recover
from .evaluating_baseline import Baseline, evaluate_baseline
from .exporting import Exported, export, write_outputs
from .fine_tuning_teacher import Teacher, fine_tune_teacher, keep_teacher
from .fusing import Fused, fuse
from .preparing import Prepared, prepare
from .selecting import Selected, select_depth
from .sweeping import Swept, run_sweep

__all__ = [
    "Baseline",
    "Exported",
    "Fused",
    "Prepared",
    "Recovered",
    "Selected",
    "Swept",
    "Teacher",
    "evaluate_baseline",
    "export",
    "fine_tune_teacher",
    "fuse",
    "keep_teacher",
    "prepare",
    "recover",
    "run_sweep",
    "select_depth",
    "write_outputs",
]
