"""`facetwin evaluate PAIRS_FILE --images DIR`: LFW k-fold verification accuracy, JSON and a picture."""

from __future__ import annotations

from facetwin.backbones.registry import DEFAULT_BACKBONE
from facetwin.cli.options import BACKBONE_HELP, add_training_options, configure_torch, training_options
from facetwin.cli.parser import backbone_source, existing_path
from facetwin.errors import FacetwinError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="verification accuracy on an LFW-style pairs file (k-fold protocol)",
        description=(
            "Embed every image of PAIRS_FILE once and report k-fold accuracy (each fold's threshold chosen on the "
            "other folds), AUC, EER and TAR at FAR 0.1 % and 1 %. With --cross-train, a head is trained for each "
            "fold on the people of the other folds and the people in no pair (LFW's unrestricted protocol); "
            "the training options below apply to it."
        ),
    )
    p.add_argument("pairs_file", type=existing_path("file", "pairs file"), metavar="PAIRS_FILE",
        help="LFW pairs.txt format, any number of folds")
    p.add_argument("--images", required=True, type=existing_path("folder", "folder of images"), metavar="DIR",
        help="folder with name/name_000N.jpg images")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", type=existing_path("folder", "run directory"), metavar="RUN_DIR",
        help="a trained run directory")
    source.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, type=backbone_source, metavar="NAME", help=BACKBONE_HELP
    )
    p.add_argument("--json", metavar="FILE", help="write the result as one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="ROC and distance histograms with the threshold, as PNG")
    p.add_argument("--skip-missing", action="store_true", help="drop pairs whose images are missing or unreadable")
    p.add_argument("--cross-train", action="store_true", help="train one head per fold on the other folds' people")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_training_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facetwin.core.paths import output_file
    from facetwin.evaluation.protocol import evaluate, summary, write_json

    output_file(args.plot, "--plot", ".png")
    output_file(args.json, "--json")
    configure_torch(args.threads)
    if args.cross_train:
        from facetwin.evaluation.crosstrain import cross_train_evaluate

        if args.model:
            raise FacetwinError("--cross-train trains its own heads: give --backbone, not --model.")
        options = {k: v for k, v in training_options(args).items() if v is not None}
        options["weights"] = args.weights
        result = cross_train_evaluate(
            args.pairs_file,
            args.images,
            backbone=args.backbone,
            train_options=options,
            skip_missing=args.skip_missing,
            progress=not args.quiet,
            plot_path=args.plot,
        )
        if args.json:
            write_json(result, args.json)
    else:
        from facetwin.loading import load

        options = {"weights": args.weights} if args.weights and not args.model else {}
        tta = None if args.model and args.tta == "none" else args.tta
        model = load(args.model or args.backbone, tta=tta, face=args.face, **options)
        result = evaluate(
            args.pairs_file,
            args.images,
            model=model,
            skip_missing=args.skip_missing or args.no_face == "skip",
            no_face="error" if args.no_face == "skip" else args.no_face,
            batch_size=args.batch_size or 32,  # without --cross-train, --batch-size is the embedding batch
            progress=not args.quiet,
            json_path=args.json,
            plot_path=args.plot,
        )
    print(summary(result))
    if args.json:
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0

