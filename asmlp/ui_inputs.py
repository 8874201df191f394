"""The app's input components and its answer to expected user errors.

Gradio prints a traceback into the server log for every exception a handler or a component's validation raises,
unless it is a ``gr.Error(..., print_exception=False)``. Refused uploads, out-of-range or unknown arguments and busy
answers are expected, not faults: they reach the person as a message and leave the log alone (:func:`refusal`).
The input components here are Gradio's own widgets whose validation errors are refusals too.
"""
from __future__ import annotations

import gradio as gr


def refusal(message: str) -> gr.Error:
    """The answer to an expected user error: the person sees ``message``; the server log gets no traceback."""
    return gr.Error(message, print_exception=False)


def _refusing(component: type) -> type:
    """``component`` (a Gradio input class) whose own validation errors — a value not among the choices, a number out
    of range — are :func:`refusal` s. A template subclass (Gradio draws it with ``component``'s widget, which it finds
    through the first base class)."""

    class Refusing(component):
        is_template = True

        def preprocess(self, payload):
            try:
                return super().preprocess(payload)
            except gr.Error as e:
                raise refusal(e.message) from None

    Refusing.__name__ = Refusing.__qualname__ = component.__name__
    return Refusing


CheckboxGroup = _refusing(gr.CheckboxGroup)
Radio = _refusing(gr.Radio)
Dropdown = _refusing(gr.Dropdown)
Slider = _refusing(gr.Slider)


class ImageUpload(gr.Image):
    """``gr.Image`` (same widget) whose upload reaches the handler as the uploaded file's path, unopened: Gradio's own
    preprocessing opens it with PIL and turns corrupt or hostile files into an opaque error; the handler's
    :func:`asmlp.image_io.load_image` checks limits from the header and gives a clear message instead."""
    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.path is None:
            raise refusal('The upload arrived without a file; upload the image again.')
        return payload.path
