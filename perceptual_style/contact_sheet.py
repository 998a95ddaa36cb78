"""A contact sheet: one row per photo, one column per style, labelled, as one image.

People judge styles by looking at them side by side; this is the picture the stylize CLI
writes next to its results and the one shown in the README. Pillow only.
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from perceptual_style.images import resize

GAP = 6
LABEL_HEIGHT = 28


def fit_height(image, height):
    """An image (array or PIL) scaled to `height`: a cell of the sheet, kept small."""
    image = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    return resize(image, max(1, round(image.width * height / image.height)), height,
                  Image.LANCZOS)


def contact_sheet(rows, labels, cell_height=192):
    """`rows`: one list of uint8 images per photo (original first, then each style), any
    sizes; `labels`: a caption per column. Returns the sheet as a uint8 RGB array."""
    rows = [[fit_height(image, cell_height) for image in row] for row in rows]
    columns = max(len(row) for row in rows)
    # Every column is as wide as its widest cell, so the labels line up.
    widths = [max(row[c].width for row in rows if c < len(row)) for c in range(columns)]
    sheet = Image.new("RGB", (sum(widths) + GAP * (columns + 1),
                              LABEL_HEIGHT + len(rows) * (cell_height + GAP) + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=18)
    x = GAP
    for column, (width, label) in enumerate(zip(widths, labels)):
        draw.text((x + width / 2, LABEL_HEIGHT / 2 + 2), label, fill="black", font=font,
                  anchor="mm")
        for r, row in enumerate(rows):
            if column < len(row):
                cell = row[column]
                sheet.paste(cell, (x + (width - cell.width) // 2,
                                   LABEL_HEIGHT + r * (cell_height + GAP)))
        x += width + GAP
    return np.asarray(sheet)
