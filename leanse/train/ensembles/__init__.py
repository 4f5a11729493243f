"""Sparse ensembles of specialists, stage by stage, as papers 000 and 001 tell them.

Three recipe kinds, each a short orchestration of the one training engine (:func:`fit`):

``smole_snr`` (000, "signal degradation")
    generalist -> K=4 specialists, one per input SNR {-5, 0, 5, 10} dB -> SNR gate -> naive
    ensemble -> fine-tuned ensemble (soft gating, lambda 10) -> test with hard gating.
``smole_gender`` (000, "speaker gender")
    the same with K=2 specialists, one per speaker sex, and the gender gate.
``speaker_moe`` (001)
    Siamese speaker embedding f on noisy pairs -> embed every clean training utterance -> mean per
    speaker -> k-means into K groups -> ``groups.json`` -> group classifier g on f -> K specialists,
    one per group -> naive -> fine-tuned (f, g and every specialist updated) -> hard gating.

Each stage is its own sub-folder of the run folder, and a stage whose checkpoint is finished
(``best/`` and ``done``) is not trained again, so a killed run picks up where it stopped::

    RUN/recipe.yaml, test_list.csv, report.md, *.png
    RUN/gate/                             000: the SNR or gender gate
    RUN/siamese/, RUN/speakers.json       001: f, and every speaker's mean embedding
    RUN/k{K}/groups.json, RUN/k{K}/gate/  001: k-means groups, the classifier g (+ frozen f)
    RUN/[k{K}/]{size}/specialist-{k}/     one per partition
    RUN/{size}/generalist/                the same-size model trained on everything
    RUN/[k{K}/]{size}/naive/              the pre-trained parts put together (parts.json)
    RUN/[k{K}/]{size}/finetune/           the fine-tuned ensemble
    RUN/evaluation/...                    per-file scores of every model

``stages.sizes`` lists the specialist sizes of a sweep (000 Fig. 2, 001 Fig. 3); ``model`` is the
headline size, reported first. The gate does not depend on the specialists' size, so it is trained
once; so is f in 001, and each size's generalist serves every K.

Choices the papers leave open are said where they are made: the gate trains on the same 1-s (5-s)
mixtures as the specialists; the fine-tuned ensemble is validated -- and its best epoch picked --
with hard gating, the way it is tested; 001's held-out speakers belong to the group of the nearest
k-means centroid (what "oracle" and per-group gate accuracy mean for speakers never clustered).
"""

from leanse.train.ensembles.partition import Partitioning
from leanse.train.ensembles.pipeline import (
    run_ensemble_recipe,
    run_smole,
    run_speaker_moe,
    train_ensemble_recipe,
    train_size,
    train_smole,
    train_speaker_moe,
)
from leanse.train.ensembles.scoring import SizeScores, claims, score_size, summary_rows
from leanse.train.ensembles.steps import (
    FineTuneTask,
    SizeStages,
    Trained,
    assemble_naive,
    cluster_speakers,
    fine_tune,
    load_parts,
    speaker_means_table,
    speaker_table,
    train_gate,
    train_group_classifier,
    train_siamese,
)
from leanse.train.stages import FineTuneStage, GateStage, SiameseStage, SmoleStages, SpeakerStages

__all__ = [
    "FineTuneStage",
    "FineTuneTask",
    "GateStage",
    "Partitioning",
    "SiameseStage",
    "SizeScores",
    "SizeStages",
    "SmoleStages",
    "SpeakerStages",
    "Trained",
    "assemble_naive",
    "claims",
    "cluster_speakers",
    "fine_tune",
    "load_parts",
    "run_ensemble_recipe",
    "run_smole",
    "run_speaker_moe",
    "score_size",
    "speaker_means_table",
    "speaker_table",
    "summary_rows",
    "train_ensemble_recipe",
    "train_gate",
    "train_group_classifier",
    "train_siamese",
    "train_size",
    "train_smole",
    "train_speaker_moe",
]
