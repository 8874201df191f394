"""AS-MLP architecture explorer — Gradio app (``python app.py``; also the Hugging Face Space entry point)."""
import os

try:  # ZeroGPU: `spaces` must be imported before torch touches CUDA; elsewhere it is absent or a no-op
    import spaces  # noqa: F401
except ImportError:
    spaces = None

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # no background network calls at start-up
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')


def main() -> None:
    import argparse
    import logging

    from asmlp.allocator import keep_freed_memory
    from asmlp.app import EngineStarter, build_app
    from asmlp.limits import queue_settings
    from asmlp.space.runtime import space_deployment

    # the server log: the app's warnings and faults (with their tracebacks), one line per event; expected user errors
    # are answered without a traceback (asmlp/ui_inputs.py, asmlp/app/wiring.py)
    logging.basicConfig(format='%(asctime)s %(levelname)s %(name)s: %(message)s', level=logging.WARNING)
    keep_freed_memory()  # large activations reuse freed memory instead of fresh pages (asmlp/allocator.py)

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--host', default=os.environ.get('GRADIO_SERVER_NAME', '127.0.0.1'))
    parser.add_argument('--port', type=int, default=int(os.environ.get('GRADIO_SERVER_PORT', 7860)))
    args = parser.parse_args()
    starter = EngineStarter()  # the page needs only the zoo data: torch, timm and the models load once it is served
    demo = build_app(starter, deployment=space_deployment())  # on a Space: ZeroGPU, its preset, its warm-up
    demo.queue(**queue_settings(starter.limits))  # limits and why: asmlp/limits.py, RELIABILITY.md
    demo.launch(server_name=args.host, server_port=args.port, footer_links=['api', 'settings'], max_file_size='20mb',
                prevent_thread_lock=True)
    starter.start()
    demo.block_thread()


if __name__ == '__main__':
    main()
