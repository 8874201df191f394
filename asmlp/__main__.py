"""Command line: ``python -m asmlp info | bench shift|models|fused|app|compile|throughput|detectors | convert |
pin | publish | download | mirror | train-demo | evaluate | predict | synth-ade20k | evaluate-coco | synth-coco | erf |
export-space | push-space | doctor``."""
from __future__ import annotations

import argparse
import importlib
import sys


def _info(args: argparse.Namespace) -> None:
    import json

    if args.imagenet:
        return _info_imagenet(args)
    if args.coco:
        return _info_coco(args)
    from .counts_cache import cached_segmenter_metrics
    from .zoo import list_models, model_entry

    for name in args.models or ():
        model_entry(name)  # unknown names fail here, with the list of known ones
    rows = [cached_segmenter_metrics(name, tuple(args.size), refresh=args.refresh)
            for name in args.models or list_models()]
    if args.json:
        print(json.dumps(rows))
        return
    height, width = args.size

    def fmt(value, spec):
        return '-' if value is None else format(value, spec)

    header = (f'{"model":<28} {"params M":>9} {"no aux M":>9} {f"GMACs@{height}x{width}":>15} {"act. MiB":>9} '
              f'{"mode":>6} {"paper M":>8} {"paper GMACs":>11} {"mIoU SS":>8} {"mIoU MS":>8}')
    print(header)
    for r in rows:
        print(f'{r["name"]:<28} {r["params"] / 1e6:>9.2f} {r["params_no_aux"] / 1e6:>9.2f} {r["gmacs"]:>15.1f} '
              f'{r["activation_mib"]:>9.0f} {r["inference"]:>6} '
              f'{fmt(r["paper_params"] and r["paper_params"] / 1e6, ".0f"):>8} '
              f'{fmt(r["paper_gmacs"], ".0f"):>11} {fmt(r["paper_miou_ss"], ".2f"):>8} '
              f'{fmt(r["paper_miou_ms"], ".2f"):>8}')
    print(f'\nGMACs = 1e9 multiply-accumulates (FLOPs / 2, the papers\' "FLOPs") of one inference forward at '
          f'{height}x{width}: backbone + decode head, auxiliary heads excluded; "slide" models count every crop '
          f'of their sliding window. Parameters include auxiliary heads unless "no aux". "act. MiB": the peak of the '
          f'fp32 tensors that forward keeps alive at once, parameters excluded. Counted on the meta device and cached '
          f'(--refresh recounts). Sources: asmlp/data/zoo.json.')


def _info_imagenet(args: argparse.Namespace) -> None:
    """``info --imagenet``: the ImageNet classifiers' params and GMACs at 224 counted beside the papers' Table 1."""
    import json

    from .classifiers import classifier_entry, list_classifiers
    from .counts_cache import cached_classifier_metrics

    for name in args.models or ():
        classifier_entry(name)  # unknown names fail here, with the list of known ones
    rows = [cached_classifier_metrics(name, refresh=args.refresh) for name in args.models or list_classifiers()]
    if args.json:
        print(json.dumps(rows))
        return

    def fmt(value, spec):
        return '-' if value is None else format(value, spec)

    print(f'{"model":<12} {"timm":<38} {"params M":>9} {"paper M":>8} {"off":>6} {"GMACs@224":>10} '
          f'{"paper":>6} {"off":>6} {"top-1":>6} {"weights":>8} {"V100 img/s":>10}')
    for r in rows:
        print(f'{r["name"]:<12} {r["timm"]:<38} {r["params"] / 1e6:>9.2f} {r["paper_params"] / 1e6:>8.0f} '
              f'{100 * r["params_off"]:>+5.1f}% {r["gmacs"]:>10.2f} {r["paper_gmacs"]:>6.1f} '
              f'{100 * r["gmacs_off"]:>+5.1f}% {r["paper_top1"]:>6.1f} {fmt(r["reported_top1"], ".1f"):>8} '
              f'{r["paper_throughput"]:>10.1f}')
    off = [r for r in rows if abs(r['params_off']) > 0.02 or abs(r['gmacs_off']) > 0.02]
    for r in off:
        print(f'\n{r["name"]}: more than 2% off the paper: {r["count_note"] or "no explanation recorded"}')
    print(f'\n{"All within 2% of the papers. " if not off else ""}Counted on the meta device '
          f'(torch.utils.flop_counter; GMACs = FLOPs / 2, the papers\' "FLOPs"), one 224x224 image; the papers round '
          f'params to the million. "top-1": the paper\'s; "weights": the number published for the weights this '
          f'project loads (timm model cards). Sources: asmlp/data/imagenet.json. Cached (--refresh recounts).')


def _info_coco(args: argparse.Namespace) -> None:
    """``info --coco``: the COCO detectors' params and GMACs at 1280x800 counted beside the AS-MLP paper's Table 5."""
    import json

    from .detectors import FLOPS_SIZE, detector_entry, detector_metrics, list_detectors

    for name in args.models or ():
        try:
            detector_entry(name)
        except ValueError as e:  # unknown names: one line with the list of known ones, no traceback
            raise SystemExit(f'asmlp info: error: {e}') from None
    rows = [detector_metrics(name) for name in args.models or list_detectors()]
    if args.json:
        print(json.dumps(rows))
        return
    height, width = FLOPS_SIZE
    print(f'{"model":<30} {"params M":>9} {"paper M":>8} {"off":>6} {f"GMACs@{height}x{width}":>15} {"attn":>5} '
          f'{"paper G":>8} {"off":>6} {"box AP":>7} {"mask AP":>8} {"weights":>8}')
    for r in rows:
        def num(value, spec, scale=1.0):  # '-' where nothing is published (the demo detectors)
            return '-' if value is None else format(value * scale, spec)
        print(f'{r["name"]:<30} {r["params"] / 1e6:>9.2f} {num(r["paper_params"], ".0f", 1e-6):>8} '
              f'{num(r["params_off"], "+.1%"):>6} {r["gmacs"]:>15.1f} {r["attention_gmacs"]:>5.1f} '
              f'{num(r["paper_gmacs"], ".0f"):>8} {num(r["gmacs_off"], "+.1%"):>6} {num(r["paper_box_ap"], ".1f"):>7} '
              f'{num(r["paper_mask_ap"], ".1f"):>8} {r["weights"] or "none":>8}')
    off = [r for r in rows if r['params_off'] is not None
           and (abs(r['params_off']) > 0.02 or abs(r['gmacs_off']) > 0.02)]
    for r in off:
        print(f'\n{r["name"]}: more than 2% off the paper: {r["count_note"] or "no explanation recorded"}')
    print(f'\n{"All within 2% of Table 5. " if not off else ""}Counted on the meta device as mmdet\'s get_flops '
          f'counted (torch.utils.flop_counter; GMACs = FLOPs / 2, the papers\' "FLOPs"): one {height}x{width} (HxW) '
          f'image, backbone, FPN and RPN head, the box head(s) on 1000 RoIs and the mask head(s) on 100; RoIAlign and '
          f'NMS not counted. "attn": Swin\'s window-attention matmuls, included here, which mmcv\'s counter skipped. '
          f'Box / mask AP: Table 5 (3x schedule); "weights": released checkpoints. Sources: asmlp/data/coco.json.')


def _bench(args: argparse.Namespace) -> None:
    if args.what == 'shift':
        from .bench.shift import main
        main(threads=args.threads, repeat=args.repeat or 300, device=args.device, precision=args.precision)
    elif args.what == 'fused':
        from .bench.fused import main
        main(repeat=args.repeat or 50)
    elif args.what == 'throughput':
        from .bench.throughput import DEFAULT_BATCH, main
        main(args.models, batch=args.batch or DEFAULT_BATCH, repeat=args.repeat or 5, threads=args.threads,
             device=args.device, precision=args.precision, channels_last=args.channels_last, as_json=args.json)
    elif args.what == 'detectors':
        from .bench.detectors import DEFAULT_MODELS, DEFAULT_SIZE, main
        from .detectors import detector_entry
        models = args.models or DEFAULT_MODELS
        for name in models:
            detector_entry(name)  # unknown names fail here, with the list of known ones
        main(models, tuple(args.size or DEFAULT_SIZE), repeat=args.repeat or 3, threads=args.threads,
             device=args.device)
    elif args.what == 'compile':
        from .bench.compile import DEFAULT_MODELS, main
        main(args.models or DEFAULT_MODELS, args.size, repeat=args.repeat or 10, threads=args.threads)
    elif args.what in ('models', 'app'):
        from .zoo import model_entry
        if args.what == 'models':
            from .bench.models import DEFAULT_MODELS, DEFAULT_SIZE, main
        else:
            from .bench.app import DEFAULT_MODELS, DEFAULT_SIZE, main
        models = args.models or DEFAULT_MODELS
        for name in models:
            model_entry(name)  # unknown names fail here, with the list of known ones
        extra = {'device': args.device} if args.what == 'models' else {}
        main(models, tuple(args.size or DEFAULT_SIZE), repeat=args.repeat or 5, threads=args.threads, **extra)


def _positive_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'sizes must be >= 1, got {value}')
    return value


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m asmlp', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    info = sub.add_parser('info', help='table of the zoo models: parameters, GMACs, published numbers')
    info.add_argument('--size', nargs=2, type=_positive_size, default=(512, 2048), metavar=('H', 'W'))
    info.add_argument('--json', action='store_true', help='print only a JSON list')
    info.add_argument('--models', nargs='+', metavar='NAME', help='only these zoo models (default: all)')
    info.add_argument('--imagenet', action='store_true',
                      help='the ImageNet classifiers instead (params, GMACs at 224 beside the papers\' Table 1)')
    info.add_argument('--coco', action='store_true',
                      help='the COCO detectors instead (params, GMACs at 1280x800 beside the AS-MLP paper\'s Table 5)')
    info.add_argument('--refresh', action='store_true', help='recount instead of using the cached counts')
    info.set_defaults(func=_info)
    bench = sub.add_parser('bench', help='benchmarks (results belong in BENCHMARKS.md)')
    bench.add_argument('what', choices=['shift', 'models', 'fused', 'app', 'compile', 'throughput', 'detectors'])
    bench.add_argument('--threads', type=int, default=2)
    bench.add_argument('--repeat', type=_positive_size,
                       help='timed runs per measurement (shift 300, models 5, fused 50)')
    bench.add_argument('--size', nargs=2, type=_positive_size, metavar=('H', 'W'),
                       help='input size of bench models (default 512 512) / image size of bench app (512 683)')
    bench.add_argument('--models', nargs='+', help='zoo names for bench models / app (default: the light T/S ones); '
                       'for bench compile also timm classifiers (default asmlp_tiny upernet_asmlp_nano); for bench '
                       'throughput the ImageNet classifiers of `info --imagenet` (default: all)')
    bench.add_argument('--batch', type=_positive_size, help='bench throughput: images per forward (default 64, AS-MLP '
                       'Table 1)')
    bench.add_argument('--device', default='cpu', help='bench shift / models / throughput: cpu or cuda[:index]')
    bench.add_argument('--precision', default='fp32', choices=['fp32', 'bf16', 'fp16'],
                       help='bench throughput: autocast precision; bench shift: tensor dtype')
    bench.add_argument('--channels-last', action='store_true', help='bench throughput: channels_last inputs/models')
    bench.add_argument('--json', action='store_true', help='bench throughput: print one JSON object')
    bench.set_defaults(func=_bench)
    # the other sub-commands: only the chosen one's module is imported (a cached `info` needs neither torch nor timm);
    # all of them for --help or an unknown command
    chosen = argv[0] if argv else None
    if chosen not in ('info', 'bench'):
        modules = [COMMANDS[chosen]] if chosen in COMMANDS else COMMANDS.values()
        for module in dict.fromkeys(modules):
            importlib.import_module(module, __package__).register_cli(sub)
    return parser


COMMANDS = {  # sub-command -> the module whose register_cli(subparsers) adds it
    'convert': '.convert', 'pin': '.hub.cli', 'publish': '.hub.cli', 'download': '.hub.cli', 'mirror': '.hub.cli',
    'train-demo': '.demo.cli', 'erf': '.explain.cli', 'doctor': '.doctor.cli',
    'evaluate': '.evaluation.cli', 'predict': '.evaluation.cli', 'synth-ade20k': '.evaluation.cli',
    'evaluate-coco': '.evaluation.coco_cli', 'synth-coco': '.evaluation.coco_cli',
    'export-space': '.space.cli', 'push-space': '.space.cli',
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    return args.func(args) or 0


if __name__ == '__main__':
    sys.exit(main())
