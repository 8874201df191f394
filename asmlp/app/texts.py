"""The app's texts: what each tab explains, and the script that draws animated plotly figures."""
from __future__ import annotations

__all__ = ['TITLE', 'ABOUT', 'COUNTED_NOTE', 'SHIFT_TEXT', 'MIXING_TEXT', 'RF_TEXT', 'CLASSIFY_TEXT',
           'NO_TRAINED_SEGMENTERS', 'TTA_CHOICES', 'ANIMATED_FIGURE_JS']

TITLE = ('## AS-MLP architecture explorer\nHow an axial-shift MLP ([AS-MLP](https://arxiv.org/abs/2107.08391)) '
         'segments an image next to Swin and SETR — the masks, the cost, and why.')

# plotly figures with animation frames are drawn by plotly.js in a gr.HTML: gr.Plot does not play them
ANIMATED_FIGURE_JS = """
const draw = () => {
  if (!props.value) return;
  const fig = JSON.parse(props.value);
  const div = element.querySelector('.plotly-anim');
  const go = () => window.Plotly
    ? Plotly.newPlot(div, fig.data, fig.layout, {responsive: true}).then(() => Plotly.addFrames(div, fig.frames || []))
    : setTimeout(go, 100);
  go();
};
watch('value', draw);
draw();
"""

ABOUT = """
### What is compared
**AS-MLP** (Lian et al., ICLR 2022, [arXiv 2107.08391](https://arxiv.org/abs/2107.08391)) mixes tokens by
*shifting* channel groups along the width and the height and projecting them with 1x1 convolutions: no attention,
a cross-shaped receptive field per block that grows into a diamond. **Swin** (Liu et al., ICCV 2021) attends inside
shifted 7x7 windows. **SETR** (Zheng et al., CVPR 2021) runs a plain ViT-L/16 (global attention from the first
layer) with Naive, PUP or MLA decoders. AS-MLP and Swin are compared inside the same UperNet decoder, as in the
papers.

Masks are only meaningful where a model has trained ADE20K weights; each panel says what its weights are.

**"MS"** in the papers' tables is multi-scale + flip testing: the image is segmented at 0.5, 0.75, 1, 1.25, 1.5
and 1.75 times the test size, each also mirrored left-right, and the 12 softmax maps are averaged before the
argmax. The Compare tab's *Test-time augmentation: MS+flip* runs exactly that (the code of `python -m asmlp
evaluate --aug ms-flip`), at about 17.4x the cost of one pass.
"""

TTA_CHOICES = [('none', 'none'), ("MS+flip (the papers' MS protocol)", 'ms-flip')]

COUNTED_NOTE = """
Counted by this app (`python -m asmlp info`, meta device, `torch.utils.flop_counter`): UperNet-AS-MLP-T/S/B
59.94 / 81.25 / 121.26 M parameters and 936 / 1023 / 1165 GMACs at 512x2048; UperNet-Swin-T/S/B 944 / 1037 /
1187 GMACs; SETR-PUP 308.3 M parameters without its auxiliary heads. GMACs are multiply-accumulates (the papers
call them FLOPs) of the backbone and decode head; SETR counts every crop of its sliding window.
"""

SHIFT_TEXT = """
**The axial shift.** The C channels are split into *s* contiguous groups of ceil(C/s) channels; group *g* moves by
(g − s//2)·d positions along the width (W branch) or the height (H branch), and what enters from outside the map is
zero. Each branch is then a 1x1 convolution, so one output position mixes *s* positions of its row and *s* of its
column. Every frame below is computed by the project's own shift op.
"""

MIXING_TEXT = ('Which input positions one output position mixes: the W branch (a row of *s* positions, *d* apart) '
               'plus the H branch (a column), summed — the cross of the paper\'s Fig. 3. With more blocks the '
               'crosses compose into a diamond.')

RF_TEXT = """
**Receptive fields.** *Theoretical*: every input pixel that can influence the centre position after each block —
AS-MLP grows a staircase diamond (crosses of crosses), Swin grows by windows (shifted every other block), ViT is
global after its first block. *Effective* (Luo et al. 2016): the gradient of the centre position of each stage with
respect to the input, on your image, for the loaded weights (log-scaled). UperNet's pooling makes every *head*
output global, so the comparison is made at the backbone stages.
"""

CLASSIFY_TEXT = """
**ImageNet-1K classification.** Trained AS-MLP-T and AS-MLP-S exist only as the official ImageNet classifiers,
so this is where they can be seen trained next to Swin-T/S/B and DeiT-S/B (timm's `ms_in1k` / `fb_in1k` weights).
Each model gets timm's own eval transform for its weights (resize, centre crop at 224, mean/std); the table shows
each one's top-5 classes with softmax probabilities, the latency is one forward at batch 1 on this machine.
"""

NO_TRAINED_SEGMENTERS = ('Trained UperNet-AS-MLP-T/S segmenters do not exist: only AS-MLP-B was released for '
                         'ADE20K; AS-MLP-T/S were released as ImageNet classifiers — see them trained in the '
                         '**Classify** tab.')
