"""What the workflow makes from a config: models, runs, evaluated points, tables and figures.

Everything here is keyed by name: a run by its key in ``runs``, a base model by ``"base"`` or
``"base-<name>"`` (an entry of ``base_models``), the reference model by ``"reference"``. Display labels
(``"slm: SLM (ratio 0.6)"``) are made only for the tables' rows, never used to find anything.

Replicates: a run with ``seeds`` is trained once per seed, each a *replicate* named ``<run>/seed-<seed>``
(so ``results/models/slm/seed-1/final``, ``results/eval/slm/seed-1/final.json``,
``logs/train/slm/seed-1.log``); a run without is one replicate named like the run, trained with the
config's ``seed``. Everything that needs one model of a run (the token dynamics, Figure 6, Table 3's
parameter count) takes its first replicate; Table 2 fine-tunes the replicates of
``tool_integrated.pretraining_seeds``, by default the first.

The Snakemake rules ask a :class:`Plan` for paths and for the JSON ``--spec`` of the reporting stages
(``workflow/rules/common.smk`` holds one, built from the validated config); the plan reads no file, so
it is tested on plain dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from slm.config import harder_sets, run_seeds

RESULTS = "results"
REFERENCE_FINAL = f"{RESULTS}/models/reference/final"
SELECTION_KEYS = ("ratio", "unit", "score_fn", "weighting", "temperature")
DEFAULT_PAPER_TABLE = "table1_math_fewshot_cot"


class Plan:
    """The models, runs, evaluations, tables and figures of one (validated) config.

    ``configfiles`` name the config files for the provenance of the paper tables.
    """

    def __init__(self, config: dict, configfiles: Sequence[str] = ()):
        self.config = config
        self.configfiles = [str(f) for f in configfiles]
        self.runs: list[str] = list(config["runs"])
        self.checkpoints: list[int] = list(config["training"].get("checkpoints", []))
        self.extra_bases: dict = config.get("base_models") or {}
        self.reference_given: bool = "path" in config["reference"]
        evaluation = config["evaluation"]
        self.loss_tasks: list[str] = list(evaluation.get("lower_is_better", []))
        self.accuracy_tasks: list[str] = [t for t in evaluation["tasks"] if t not in self.loss_tasks]
        self.task_metrics: dict[str, str] = {t: evaluation["metrics"][t] for t in evaluation["tasks"]}
        self.dynamics_runs: list[str] = list(config.get("dynamics", {}).get("runs", []))
        tir = config.get("tool_integrated")
        # Table 2's fine-tuned models: runs, and base / reference as controls; once per fine-tuning seed
        self.tir_runs: list[str] = list(tir["runs"]) if tir else []
        self.tir_seeds: list[int] = list(tir.get("seeds", [config["seed"]])) if tir else []
        # the pretraining seeds whose final models each run is fine-tuned from (None: each run's first)
        self.tir_pretraining_seeds: list[int] | None = tir.get("pretraining_seeds") if tir else None
        # the fine-tunings' intermediate checkpoints (token counts), each evaluated for Table 2's curve
        self.tir_checkpoints: list[int] = sorted(tir["training"].get("checkpoints", [])) if tir else []
        # held-out problem sets harder than the training solutions, each evaluated on every final fine-tuning:
        # name -> bounds (defaults filled in)
        self.tir_harder: dict[str, dict] = harder_sets(config) if tir else {}

    # ------------------------------------------------------------------ replicates
    def seeds(self, run: str) -> list[int]:
        """The training seeds of a run (:func:`slm.config.run_seeds`)."""
        return run_seeds(self.config, run)

    def replicates(self, run: str) -> list[str]:
        """The replicate names of a run: ``<run>/seed-<seed>`` per seed when it lists ``seeds``, else the run."""
        if "seeds" not in self.config["runs"][run]:
            return [run]
        return [f"{run}/seed-{seed}" for seed in self.seeds(run)]

    @cached_property
    def replicate_index(self) -> dict[str, tuple[str, int]]:
        """Every replicate: name -> (run, seed), runs in config order."""
        return {r: (run, seed) for run in self.runs for r, seed in zip(self.replicates(run), self.seeds(run))}

    def run_of(self, replicate: str) -> str:
        return self.replicate_index[replicate][0]

    def seed_of(self, replicate: str) -> int:
        return self.replicate_index[replicate][1]

    def primary(self, run: str) -> str:
        """The replicate that stands for a run where one model is needed: its first seed's."""
        return self.replicates(run)[0]

    # ------------------------------------------------------------------ models
    @cached_property
    def base_stems(self) -> list[str]:
        """Directory stems of the base models: ``base`` (base_model), ``base-<name>`` (base_models)."""
        return ["base"] + [f"base-{name}" for name in self.extra_bases]

    def base_spec(self, stem: str) -> dict:
        """The config section of a base model by its stem."""
        return self.config["base_model"] if stem == "base" else self.extra_bases[stem.removeprefix("base-")]

    def base_model(self, name: str | None = None) -> str:
        """A base model: ``base_model`` (name None) or an entry of ``base_models``; a directory made
        here (pretrained, else only initialised), or the hub id / path the config gives."""
        stem = "base" if name is None else f"base-{name}"
        spec = self.base_spec(stem)
        if "path" in spec:
            return spec["path"]
        return f"{RESULTS}/models/{stem}" if "pretrain" in spec else f"{RESULTS}/models/{stem}-init"

    def run_base(self, run: str) -> str:
        """The model a run starts from: its ``runs.<run>.base_model`` entry, else ``base_model``."""
        return self.base_model(self.config["runs"][run].get("base_model"))

    def run_base_key(self, run: str) -> str:
        """The evaluated model a run starts from: ``base`` or ``base-<name>``."""
        name = self.config["runs"][run].get("base_model")
        return "base" if name is None else f"base-{name}"

    @cached_property
    def runs_by_base(self) -> dict[str, list[str]]:
        """The base_models entries that runs start from, each with its runs (weak-to-strong, Table 3)."""
        named: dict[str, list[str]] = {}
        for run, spec in self.config["runs"].items():
            if "base_model" in spec:
                named.setdefault(spec["base_model"], []).append(run)
        return named

    def reference_model(self) -> str:
        """The model that scores the corpus: given (``reference.path``) or fine-tuned here."""
        return self.config["reference"]["path"] if self.reference_given else REFERENCE_FINAL

    def reference_init(self) -> str:
        """The model the reference is fine-tuned from: ``reference.init_model``, else the base model."""
        return self.config["reference"].get("init_model", self.base_model())

    def model_dir(self, model: str, point: str = "final") -> str:
        """Directory (or hub id) of an evaluated model: ``base``, ``base-<name>``, ``reference``, or a
        replicate's ``final`` model or checkpoint ``tokens-N``."""
        if model == "base":
            return self.base_model()
        if model.startswith("base-") and model.removeprefix("base-") in self.extra_bases:
            return self.base_model(model.removeprefix("base-"))
        if model == "reference":
            return self.reference_model()
        if point == "final":
            return f"{RESULTS}/models/{model}/final"
        return f"{RESULTS}/models/{model}/checkpoints/{point}"

    def trajectory(self, run: str) -> list[str]:
        """The models along a run (its first replicate) in training order: its base, each checkpoint, the
        final model."""
        points = [f"tokens-{n}" for n in sorted(self.checkpoints)] + ["final"]
        return [self.run_base(run)] + [self.model_dir(self.primary(run), point) for point in points]

    def train_fields(self, replicate: str) -> dict:
        """What a replicate trains with beyond the ``training`` section: its base model, its seed and the
        run's selection settings (CLM is SLM at ratio 1.0)."""
        run = self.run_of(replicate)
        return {"init_model": self.run_base(run), "seed": self.seed_of(replicate), **self.selection_fields(run)}

    def selection_fields(self, run: str) -> dict:
        """The selection settings a run trains with; CLM is SLM at ratio 1.0."""
        spec = self.config["runs"][run]
        if spec["method"] == "clm":
            return {"ratio": 1.0}
        return {k: spec[k] for k in SELECTION_KEYS if k in spec}

    # ------------------------------------------------------------------ evaluation
    def eval_points(self, run: str) -> list[str]:
        """The points of a run that lm-eval scores: its checkpoints (when configured) and final model."""
        which = self.config["evaluation"].get("checkpoints", True)
        if which is True or (isinstance(which, list) and run in which):
            return [f"tokens-{n}" for n in self.checkpoints] + ["final"]
        return ["final"]

    @staticmethod
    def eval_json(model: str, point: str = "final") -> str:
        return f"{RESULTS}/eval/{model}/{point}.json"

    @staticmethod
    def train_stats(run: str, point: str = "final") -> str:
        folder = "final" if point == "final" else f"checkpoints/{point}"
        return f"{RESULTS}/models/{run}/{folder}/train_stats.json"

    # ------------------------------------------------------------------ tables
    def run_label(self, run: str) -> str:
        """The results table's row label of a run, e.g. ``"slm: SLM (ratio 0.6)"``."""
        spec = self.config["runs"][run]
        label = spec["method"].upper()
        if spec.get("weighting") == "soft":
            label += f" (soft weights, T={spec.get('temperature', 1.0)})"
        elif spec["method"] == "slm":
            label += f" (ratio {spec['ratio']})"
        if "base_model" in spec:
            label += f", from Base ({spec['base_model']})"
        return f"{run}: {label}"

    def table_models(self) -> list[dict]:
        """The results table's rows in order: the base model, the extra bases, the reference, each run.

        Each row: ``key`` (what pairs and figures refer to), ``name`` (the shown label), ``role``
        (``base``, ``reference``, ``slm``, ``clm``) and ``replicates``, the evaluated models it averages:
        ``[{seed, eval_json, train_stats}]`` (one without seed for a base or the reference model).
        """

        def one(key: str, name: str, role: str, train_stats: str | None) -> dict:
            replicate = {"seed": None, "eval_json": self.eval_json(key), "train_stats": train_stats}
            return {"key": key, "name": name, "role": role, "replicates": [replicate]}

        rows = [one("base", "Base", "base", None)]
        rows += [one(f"base-{name}", f"Base ({name})", "base", None) for name in self.extra_bases]
        rows.append(
            one(
                "reference",
                "Reference",
                "reference",
                None if self.reference_given else f"{REFERENCE_FINAL}/train_stats.json",
            )
        )
        rows += [
            {
                "key": run,
                "name": self.run_label(run),
                "role": self.config["runs"][run]["method"],
                "replicates": [
                    {"seed": self.seed_of(r), "eval_json": self.eval_json(r), "train_stats": self.train_stats(r)}
                    for r in self.replicates(run)
                ],
            }
            for run in self.runs
        ]
        return rows

    @cached_property
    def delta(self) -> tuple[str, str] | None:
        """The (SLM, CLM) pair of the SLM − CLM row: the runs named ``slm`` and ``clm`` when they exist,
        else the first run of each method; None without both methods."""
        return _pair_by_method(self.config["runs"], self.runs)

    def table_runs(self) -> list[dict]:
        """Every evaluated point of every replicate (the accuracy-against-tokens data of Figure 1)."""
        return [
            {
                "run": run,
                "seed": self.seed_of(replicate),
                "checkpoints": [
                    {
                        "tokens": None if point == "final" else int(point.removeprefix("tokens-")),
                        "eval_json": self.eval_json(replicate, point),
                        "train_stats": self.train_stats(replicate, point),
                    }
                    for point in self.eval_points(run)
                ],
            }
            for run in self.runs
            for replicate in self.replicates(run)
        ]

    def table_evals(self) -> list[str]:
        """Every evaluation JSON the tables read."""
        paths = {r["eval_json"] for m in self.table_models() for r in m["replicates"]}
        paths |= {c["eval_json"] for r in self.table_runs() for c in r["checkpoints"]}
        return sorted(paths)

    def final_models(self) -> list[str]:
        """The final model of every replicate."""
        return [self.model_dir(r) for r in self.replicate_index]

    @property
    def figure5_table(self) -> list[str]:
        """Figure 5's table (the per-task gain of the SLM − CLM pair), when there is a pair."""
        return table_files("figure5") if self.delta else []

    @property
    def speedup_table(self) -> list[str]:
        """The speed-up table (tokens SLM needs to reach CLM's final accuracy), when there is a pair and an
        accuracy task."""
        return (
            [f"{RESULTS}/tables/speedup.{ext}" for ext in ("md", "csv")] if self.delta and self.accuracy_tasks else []
        )

    @property
    def table2(self) -> list[str]:
        """Table 2 (tool-integrated reasoning) and where its solutions went wrong, when ``tool_integrated``
        lists runs; and the selection rates by token role of its SLM run, when that run has token dynamics."""
        if not self.tir_runs:
            return []
        tables = [f for stem, _task, _harder in self.tir_tables for f in tir_table_files(stem)]
        return tables + self.selection_roles + self.table2_curve

    @property
    def selection_roles(self) -> list[str]:
        """The selection rates by token role of Table 2's SLM run (Markdown, CSV), when it has token dynamics."""
        return [f"{RESULTS}/tables/selection_roles.{ext}" for ext in ("md", "csv")] if self.roles_run else []

    @property
    def tir_tables(self) -> list[tuple[str, str, str | None]]:
        """Table 2 on each problem set, as ``(table stem, task name, harder set)``: on arith_gen's problems
        (``table2``, harder set None), then on each of ``tool_integrated.harder_sets`` (``table2_<name>``)."""
        return [("table2", "arith_tir", None)] + [(f"table2_{h}", f"arith_tir_{h}", h) for h in self.tir_harder]

    def tir_problems_said(self, harder: str | None) -> str:
        """The problems a Table 2 is evaluated on, in words (its provenance)."""
        if harder is None:
            return "arith_gen's held-out problems (data.generator)"
        bounds = self.tir_harder[harder]
        return (
            f"harder set {harder!r} (tool_integrated.harder_sets): {bounds['problems']} held-out problems of "
            f"{bounds['min_steps']}-{bounds['max_steps']} steps, operands up to {bounds['max_operand']}, none "
            "within data.generator's bounds"
        )

    @staticmethod
    def harder_problems(harder: str) -> str:
        """The held-out problems of a harder set (slm.data.generate.generate_harder_set)."""
        return f"{RESULTS}/data/raw/eval/arith_tir_{harder}.jsonl"

    def harder_spec(self, harder: str) -> dict:
        """The ``--spec`` of ``python -m slm generate-harder`` for one harder set: its name, its bounds
        (:func:`slm.config.harder_sets`) and the generator's spec, whose bounds its problems lie outside."""
        generator = {"seed": self.config["seed"], **self.config["data"]["generator"]}
        return {"name": harder, "harder": self.tir_harder[harder], "generator": generator}

    @property
    def table3(self) -> list[str]:
        """Table 3 (weak-to-strong), when a run starts from an entry of base_models."""
        return table_files("table3") if self.runs_by_base else []

    def tables_spec(self) -> dict:
        """The ``--spec`` of ``python -m slm tables``."""
        return {
            "models": self.table_models(),
            "task_metrics": self.task_metrics,
            "delta": list(self.delta) if self.delta else None,
            "lower_is_better": self.loss_tasks,
            "runs": self.table_runs(),
            "selection": {run: [self.train_stats(r) for r in self.replicates(run)] for run in self.runs},
            "figure5_mapping": self.config.get("tables", {}).get("figure5_columns", {}),
            # where SLM's curve starts (0 tokens): the model the pair's SLM run starts from (a table row)
            "speedup_start": self.run_base_key(self.delta[0]) if self.delta else None,
        }

    def paper_table_spec(self, results_csv: str) -> dict:
        """The ``--spec`` of ``python -m slm paper-table`` for the paper table beside this run's rows."""
        tables = self.config.get("tables", {})
        return {
            "results_csv": results_csv,
            "table": tables.get("paper_table", DEFAULT_PAPER_TABLE),
            "mapping": tables.get("paper_columns", {}),
            "provenance": {
                "config": ", ".join(self.configfiles),
                "tokens per run": self.config["training"].get("max_tokens"),
                "checkpoints (tokens)": self.checkpoints,
                "runs": self.runs,
            },
        }

    # ------------------------------------------------------------------ Table 3 (weak-to-strong)
    @property
    def w2s_runs(self) -> list[str]:
        return [run for runs in self.runs_by_base.values() for run in runs]

    def table3_parameters(self) -> dict[str, str]:
        """Row name (or ``Base``/``Reference``) -> directory of the models made here that Table 3 counts
        the parameters of (the rule's inputs)."""
        models = {
            "Base": self.base_model(),
            "Reference": self.reference_model(),
            **{f"Base ({name})": self.base_model(name) for name in self.runs_by_base},
            **{run: self.model_dir(self.primary(run)) for run in self.w2s_runs},
        }
        return {name: path for name, path in models.items() if path.startswith(f"{RESULTS}/")}

    def table3_spec(self, results_csv: str) -> dict:
        """The ``--spec`` of ``python -m slm paper-table`` for Table 3: the runs that start from an
        entry of base_models, each after its base's row, beside the paper's Llama-2-7B rows."""
        reference = self.reference_model()
        if not self.reference_given:
            reference += f", fine-tuned from {self.reference_init()}"
        return {
            "results_csv": results_csv,
            "table": "table3_weak_to_strong",
            # this run's columns -> the paper's, as for the paper table; plus each run's reference
            "mapping": {**self.config.get("tables", {}).get("paper_columns", {}), "reference": "reference"},
            "usable_mapping": True,
            "rows": [row for name, runs in self.runs_by_base.items() for row in [f"Base ({name})", *runs]],
            "values": {
                run: {"reference": "Reference" if self.config["runs"][run]["method"] == "slm" else None}
                for run in self.w2s_runs
            },
            "parameters": self.table3_parameters(),
            "provenance": {
                "config": ", ".join(self.configfiles),
                "tokens per run": self.config["training"].get("max_tokens"),
                "runs": self.w2s_runs,
                "reference model (scores the corpus for every run)": reference,
                **{f"base of {run}": self.run_base(run) for run in self.w2s_runs},
            },
        }

    # ------------------------------------------------------------------ figures
    @cached_property
    def figures(self) -> list[str]:
        """The figure files the config's runs and tasks support, in the order they are listed."""
        return (
            ["figure1.png"]
            + (["figure6.png"] if self.delta else [])
            + (["figure7.png"] if self.loss_tasks or self.delta else [])
            + ["figure9.png"]
            + (["figure5.png"] if self.figure5_table else [])
        )

    def ratio_runs(self) -> dict[str, float]:
        """Runs that differ only in their selection ratio (Figure 9), with it; CLM counts as 1.0."""
        return {
            run: spec.get("ratio", 1.0)
            for run, spec in self.config["runs"].items()
            if spec.get("unit", "batch") == "batch"
            and spec.get("score_fn", "excess") == "excess"
            and spec.get("weighting", "hard") == "hard"
            and "base_model" not in spec  # another base model: not the same experiment
        }

    @property
    def figure6_runs(self) -> list[str]:
        """The SLM and CLM runs compared on held-out tokens (Figure 6; the SLM − CLM pair, SLM first)."""
        return list(self.delta) if self.delta else []

    def figures_spec(self, dynamics: Sequence[str], figure5_csv: str | None) -> dict:
        """The ``--spec`` of ``python -m slm figures`` (without the input tables' paths, which the rule
        adds): ``dynamics`` are the token-dynamics folders of :attr:`figure6_runs`."""
        return {
            "accuracy_tasks": self.accuracy_tasks,
            "loss_task": self.loss_tasks[0] if self.loss_tasks else None,
            "dynamics_by_run": {run: f"{path}/losses.npz" for run, path in zip(self.figure6_runs, dynamics)},
            "dynamics_seeds": {run: self.seed_of(self.primary(run)) for run in self.figure6_runs},
            "ratio": self.config["runs"][self.delta[0]]["ratio"] if self.delta else None,
            "ratio_runs": self.ratio_runs(),
            "delta": list(self.delta) if self.delta else None,
            "figure5_csv": figure5_csv,
        }

    # ------------------------------------------------------------------ token dynamics
    def dynamics_ratio(self, run: str) -> tuple[float, str] | None:
        """The top-k selection the dynamics view of ``run`` marks, ranked by the run's own excess losses:
        ``(ratio, the hard-selection SLM run it is taken from)``: the run itself when it is one, else the
        SLM run of the SLM − CLM pair, else the first; None without any."""
        hard = [r for r, s in self.config["runs"].items() if s["method"] == "slm" and s.get("weighting") != "soft"]
        if run in hard:
            source = run
        elif self.delta and self.delta[0] in hard:  # the SLM run this one is compared with
            source = self.delta[0]
        else:
            source = next(iter(hard), None)
        return (self.config["runs"][source]["ratio"], source) if source else None

    # ------------------------------------------------------------------ Table 2 (tool-integrated)
    @property
    def tir_delta(self) -> tuple[str, str] | None:
        """The SLM and CLM runs of ``tool_integrated.runs`` (first of each method, SLM first; the base and
        reference controls are no runs)."""
        runs = [run for run in self.tir_runs if run in self.config["runs"]]
        return _pair_by_method(self.config["runs"], runs, prefer_names=False)

    @property
    def tir_points(self) -> list[str]:
        """What is evaluated of each fine-tuning: its checkpoints ``tokens-N`` in training order, then ``final``."""
        return [f"tokens-{n}" for n in self.tir_checkpoints] + ["final"]

    def tir_sources(self, model: str) -> list[tuple[str, int | None]]:
        """What one row of Table 2 fine-tunes, as ``(key, pretraining seed)``: for a run, the final model of
        each replicate whose seed ``tool_integrated.pretraining_seeds`` lists (default: the run's first
        seed), keyed by replicate name; for a control (``base``, ``reference``), the one model and None."""
        if model not in self.config["runs"]:
            return [(model, None)]
        chosen = self.tir_pretraining_seeds or self.seeds(model)[:1]
        return [(key, seed) for key, seed in zip(self.replicates(model), self.seeds(model)) if seed in chosen]

    @property
    def tir_keys(self) -> list[str]:
        """Every model Table 2 fine-tunes (:meth:`tir_sources`' keys), rows in order."""
        return [key for model in self.tir_runs for key, _ in self.tir_sources(model)]

    @staticmethod
    def tir_model(key: str, seed: int, point: str = "final") -> str:
        """A fine-tuned model of Table 2 (``key`` from :meth:`tir_sources`, fine-tuning seed ``seed``):
        ``final``, or checkpoint ``tokens-N`` of the fine-tuning."""
        folder = "final" if point == "final" else f"checkpoints/{point}"
        return f"{RESULTS}/models/tir/{key}/seed-{seed}/{folder}"

    @staticmethod
    def tir_eval(key: str, seed: int, point: str = "final", harder: str | None = None) -> str:
        """The tool-integrated evaluation of :meth:`tir_model`, on arith_gen's problems or (``harder``) on
        those of a harder set."""
        problems = f"harder-{harder}/" if harder else ""
        return f"{RESULTS}/eval/tir/{problems}{key}/seed-{seed}/{point}.json"

    def tir_units(self, model: str, point: str = "final", harder: str | None = None) -> list[dict]:
        """The fine-tunings of one row of Table 2 at one point, each pretrained model (in its run's seed
        order) once per fine-tuning seed: ``{pretraining_seed, seed, eval_json, model_dir}``; evaluated
        on arith_gen's problems, or on those of harder set ``harder``."""
        return [
            {
                "pretraining_seed": pretraining_seed,
                "seed": seed,
                "eval_json": self.tir_eval(key, seed, point, harder),
                "model_dir": self.tir_model(key, seed, point),
            }
            for key, pretraining_seed in self.tir_sources(model)
            for seed in self.tir_seeds
        ]

    @property
    def table2_curve(self) -> list[str]:
        """Table 2's learning curve (table, its data, its figure), when the fine-tunings keep checkpoints."""
        return [f"{RESULTS}/tables/table2_curve.{ext}" for ext in ("md", "csv", "png")] if self.tir_checkpoints else []

    def table2_curve_spec(self) -> dict:
        """The ``--spec`` of ``python -m slm tir-curve``: every evaluated point of every fine-tuning
        (:meth:`tir_units`), with the model evaluated there (whose ``train_stats.json`` says how many
        tokens it had seen), in row order (model, then point)."""
        return {
            "points": [
                {"model": model, "point": point, **unit}
                for model in self.tir_runs
                for point in self.tir_points
                for unit in self.tir_units(model, point)
            ]
        }

    def table2_spec(self) -> dict:
        """The ``--spec`` of ``python -m slm tir-table``: one table per problem set (:attr:`tir_tables`),
        each with its task name, its output stem and each row's fine-tunings (:meth:`tir_units`) as
        ``[model, units]`` pairs in the order of ``tool_integrated.runs`` (the table's row order)."""
        tir = self.config["tool_integrated"]
        return {
            "tables": [
                {
                    "task": task,
                    "out": f"{RESULTS}/tables/{stem}",
                    "problems": self.tir_problems_said(harder),
                    "evals": [[model, self.tir_units(model, harder=harder)] for model in self.tir_runs],
                }
                for stem, task, harder in self.tir_tables
            ],
            "delta": self.tir_delta,
            "provenance": {
                "config": ", ".join(self.configfiles),
                "fine-tuned runs": self.tir_runs,
                "fine-tuning": tir["training"],
                "evaluation": tir.get("evaluation", {}),
            },
        }

    @property
    def roles_run(self) -> str | None:
        """The SLM run of Table 2 whose token dynamics give the selection rates by token role (slm.roles)."""
        run = self.tir_delta[0] if self.tir_delta else None
        return run if run in self.dynamics_runs else None

    # ------------------------------------------------------------------ releases (model cards)
    @cached_property
    def released(self) -> dict[str, str]:
        """Every evaluated model made here, by its path under results/models, with its evaluation JSON:
        what ``model_cards`` publishes (slm.model_card)."""
        models = {}
        for stem in self.base_stems:
            if "path" not in self.base_spec(stem):
                models[self.model_dir(stem)] = self.eval_json(stem)
        if not self.reference_given:
            models[self.reference_model()] = self.eval_json("reference")
        for replicate in self.replicate_index:
            models[self.model_dir(replicate)] = self.eval_json(replicate)
        for key in self.tir_keys:
            for seed in self.tir_seeds:
                models[self.tir_model(key, seed)] = self.tir_eval(key, seed)
        return {path.removeprefix(f"{RESULTS}/models/"): evaluation for path, evaluation in models.items()}


def table_files(stem: str) -> list[str]:
    """A table's Markdown, CSV and LaTeX files."""
    return [f"{RESULTS}/tables/{stem}.{ext}" for ext in ("md", "csv", "tex")]


def tir_table_files(stem: str) -> list[str]:
    """A Table 2's files (slm.tir.tir_table): the table's Markdown, CSV and LaTeX, then where its solutions
    went wrong (``<stem>_errors``), Markdown and CSV."""
    return table_files(stem) + [f"{RESULTS}/tables/{stem}_errors.{ext}" for ext in ("md", "csv")]


def _pair_by_method(run_specs: dict, runs: Sequence[str], *, prefer_names: bool = True) -> tuple[str, str] | None:
    """``(slm_run, clm_run)`` among ``runs``: per method the run named like it (``slm``, ``clm``) when
    ``prefer_names``, else the first of that method; None unless both methods are there."""
    chosen: dict[str, str] = {}
    for run in runs:
        method = run_specs[run]["method"]
        if method not in chosen or (prefer_names and run == method):
            chosen[method] = run
    return (chosen["slm"], chosen["clm"]) if {"slm", "clm"} <= chosen.keys() else None
