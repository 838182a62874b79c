"""Where the picture lies in a query: inside black borders, inside a player window or page, or seen at an angle
in a photo of a screen (straightened); and the list of query regions that search embeds."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..imaging import Box, boxes_differ, content_box, is_cropped

# Window detection works on a copy this wide: enough for straight edges, cheap (a few ms).
_WINDOW_WIDTH = 480
# A luma step this large between neighbouring pixels is an edge; an edge line may have gaps this long.
_EDGE_STEP = 10
_EDGE_GAP = 5
# Where a video picture sits inside application chrome, its four sides are straight edges this complete.
_SIDE_COVERAGE = 0.85
_SIDE_COVERAGE_V = 0.6  # the left and right sides: a picture's edge may blend into the surround in places
_MIN_SIDE = 0.25  # of the image's width (or height): shorter lines are details of a picture, not a window
_MIN_AREA = 0.2  # of the image: a smaller framed rectangle is a detail of the picture (a sign, a screen in it)


def _gray_copy(rgb: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """A grey copy of an image at most `width` wide (area averaging), and its scale."""
    h, w = rgb.shape[:2]
    scale = min(1.0, width / w)
    small = (
        cv2.resize(
            np.ascontiguousarray(rgb),
            (max(8, round(w * scale)), max(8, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
        if scale < 1
        else np.ascontiguousarray(rgb)
    )
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), scale


def _edge_maps(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean maps of horizontal edges (between rows) and vertical edges (between columns), small gaps closed."""
    g = gray.astype(np.int16)
    # Steps over two pixels: downscaling spreads a sharp border over two pixels of half the contrast each.
    # Entry i lies on the border between pixels i and i + 1 (i + 2 is already past it).
    horizontal = (np.abs(g[2:] - g[:-2]) > _EDGE_STEP).astype(np.uint8)
    vertical = (np.abs(g[:, 2:] - g[:, :-2]) > _EDGE_STEP).astype(np.uint8)
    horizontal = cv2.morphologyEx(horizontal, cv2.MORPH_CLOSE, np.ones((1, _EDGE_GAP), np.uint8))
    vertical = cv2.morphologyEx(vertical, cv2.MORPH_CLOSE, np.ones((_EDGE_GAP, 1), np.uint8))
    return horizontal.astype(bool), vertical.astype(bool)


def _long_lines(edges: np.ndarray, min_length: int) -> list[tuple[int, int, int]]:
    """(position, start, end) of every run of edge pixels at least min_length long, one row of `edges` each."""
    padded = np.pad(edges, ((0, 0), (1, 1))).astype(np.int8)
    steps = np.diff(padded, axis=1)
    lines = []
    for row in np.flatnonzero(edges.sum(axis=1) >= min_length):
        starts, ends = np.flatnonzero(steps[row] == 1), np.flatnonzero(steps[row] == -1)
        lines += [(int(row), int(s), int(e)) for s, e in zip(starts, ends) if e - s >= min_length]
    return lines


# Frame shapes of TV and film video; a rectangle in chrome within 3% of one of them may be a picture. Rarer
# shapes (5:4, 3:2, 16:10) are left out on purpose: a picture plus a title or control bar passes for them.
VIDEO_ASPECTS = (4 / 3, 16 / 9, 1.85, 2.35, 2.39)


def window_aspects(library: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """The shapes a picture in a window may have: the common video shapes, and those of the library's videos."""
    return VIDEO_ASPECTS + tuple(a for a in library if min(abs(a / b - 1) for b in VIDEO_ASPECTS) > 0.01)


def _aspect_error(width: int, height: int, aspects: tuple[float, ...]) -> float:
    """Relative distance of a rectangle's shape from the nearest of the given frame shapes."""
    aspect = width / max(height, 1)
    return min(abs(aspect / a - 1) for a in aspects)


def _line_positions(indices: np.ndarray) -> list[int]:
    """Border positions from sorted edge-map indices: a run of up to 4 is one sharp border (its middle); a
    longer run is textured picture, whose borders are its two ends."""
    positions = []
    for run in np.split(indices, np.flatnonzero(np.diff(indices) > 2) + 1):
        if len(run) == 0:
            continue
        positions += [int(round(float(np.mean(run))))] if run[-1] - run[0] < 4 else [int(run[0]), int(run[-1])]
    return positions


def find_windows(rgb: np.ndarray, aspects: tuple[float, ...] = VIDEO_ASPECTS, limit: int = 2) -> list[Box]:
    """Where the video picture may lie inside a player window, browser page or other chrome: up to `limit`
    distinct rectangles of a video's proportions (`aspects`: width / height) whose four sides are straight edges,
    the likeliest first (closest to a video's shape, then biggest); empty when there is none."""
    gray, scale = _gray_copy(rgb, _WINDOW_WIDTH)
    sh, sw = gray.shape
    horizontal, vertical = _edge_maps(gray)
    # Candidate sides: x positions of long vertical edges (a side may be broken where the picture's edge
    # matches the surround, so a run of a quarter of the height is enough to propose one).
    xs = _line_positions(np.array(sorted({x for x, _, _ in _long_lines(vertical.T, int(_MIN_SIDE * sh))}), int))
    # Prefix sums: the edge coverage of any row span or column span in O(1).
    row_sums = np.pad(np.cumsum(horizontal, axis=1), ((0, 0), (1, 0)))
    col_sums = np.pad(np.cumsum(vertical, axis=0), ((1, 0), (0, 0)))
    candidates = []
    for i, left in enumerate(xs):
        for right in xs[i + 1 :]:
            if right - left < _MIN_SIDE * sw:
                continue
            x0, x1 = left + 1, right + 1  # entry x of the edge map: the border just before pixel x + 1
            coverage = (row_sums[:, x1] - row_sums[:, x0]) / (x1 - x0)
            rows = np.flatnonzero(coverage >= _SIDE_COVERAGE)
            if len(rows) < 2:
                continue
            # Runs of covered rows are the horizontal lines across this span: a window's outline, its title and
            # control bars, but also straight edges inside the picture and the picture's own black bars. Any
            # pair of them close to a video's proportions may be the picture (+ 1: entry i lies between pixels
            # i and i + 2).
            lines = [y + 1 for y in _line_positions(rows)]
            bw = x1 - x0
            for k, top in enumerate(lines):
                for bottom in lines[k + 1 :]:
                    bh = bottom - top
                    if bh < _MIN_SIDE * sh or bw * bh < _MIN_AREA * sw * sh or (bw >= sw - 4 and bh >= sh - 4):
                        continue
                    error = _aspect_error(bw, bh, aspects)
                    if error > 0.03:
                        continue
                    sides = (col_sums[bottom, [left, right]] - col_sums[top, [left, right]]) / max(bh, 1)
                    if sides.min() >= _SIDE_COVERAGE_V:
                        # Closest to a video's shape first, in steps of about the measuring error; among
                        # equally good shapes, the biggest.
                        candidates.append(((round(error / 0.012), -bw * bh), (x0, top, bw, bh)))
    inset = 1.5 / scale  # keep no sliver of the chrome
    found: list[Box] = []
    for _, rectangle in sorted(candidates):
        x, y, width, height = (v / scale for v in rectangle)
        box = Box(int(np.ceil(x + inset)), int(np.ceil(y + inset)), int(width - 2 * inset), int(height - 2 * inset))
        if all(boxes_differ(box, other) for other in found):
            found.append(box)
        if len(found) == limit:
            break
    return found


# A photo of a screen shows the picture as a quadrilateral seen at an angle, brighter than the surround (or, a dark
# scene in a lit room, darker than it).
_SCREEN_WIDTH = 480  # detection works on a copy this wide
_SURROUND_STEP = 10  # luma levels beyond the surround's tones (along the image's edge) that are picture
_MIN_SCREEN_AREA = 0.2  # of the image
_MIN_SKEW = 0.01  # of the image's size: a quadrilateral closer than this to an upright box is left to content_box


def find_screen(rgb: np.ndarray) -> np.ndarray | None:
    """The corners (top-left, top-right, bottom-right, bottom-left; float x, y) of a picture seen at an angle
    inside a surround, as in a phone photo of a screen; None when there is none or it is upright."""
    gray, scale = _gray_copy(rgb, _SCREEN_WIDTH)
    edge = np.concatenate([gray[:3].ravel(), gray[-3:].ravel(), gray[:, :3].ravel(), gray[:, -3:].ravel()])
    # Mostly the screen is brighter than the room around it; a dark scene on a screen is darker than a lit room.
    for mask in (gray > np.percentile(edge, 95) + _SURROUND_STEP, gray < np.percentile(edge, 5) - _SURROUND_STEP):
        corners = _skewed_quad(mask.astype(np.uint8))
        if corners is not None:
            return corners / scale
    return None


def _skewed_quad(mask: np.ndarray) -> np.ndarray | None:
    """The four corners of the largest region of a mask if it is a skewed quadrilateral of at least
    _MIN_SCREEN_AREA of the mask; None otherwise."""
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))  # close specks in the picture
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    if cv2.contourArea(hull) < _MIN_SCREEN_AREA * mask.size:
        return None
    quad = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True).reshape(-1, 2).astype(np.float32)
    if len(quad) != 4:
        return None
    total, diff = quad.sum(axis=1), quad[:, 1] - quad[:, 0]
    corners = quad[[np.argmin(total), np.argmin(diff), np.argmax(total), np.argmax(diff)]]
    if len({tuple(c) for c in corners}) < 4:
        return None
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    upright = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    if np.abs(corners - upright).max() < _MIN_SKEW * max(mask.shape):
        return None
    return corners


def unwarp(rgb: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The picture inside four corners (as find_screen gives them) as an upright rectangle: perspective undone."""
    tl, tr, br, bl = corners
    w = max(8, int(round((np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2)))
    h = max(8, int(round((np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2)))
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    transform = cv2.getPerspectiveTransform(np.asarray(corners, np.float32), target)
    return cv2.warpPerspective(np.ascontiguousarray(rgb), transform, (w, h), flags=cv2.INTER_AREA)


def bounding_box(corners: np.ndarray, shape: tuple[int, ...]) -> Box:
    """The upright box around corner points, inside an image of this shape."""
    h, w = shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(axis=0)), 0, [w, h]).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)), 0, [w, h]).astype(int)
    return Box(int(x0), int(y0), int(x1 - x0), int(y1 - y0))


@dataclass(frozen=True)
class QueryRegion:
    """A part of the query to search: its name, where it lies in the query, and its pixels."""

    name: str
    box: Box  # for a picture seen at an angle, the upright box around it
    pixels: np.ndarray


def query_regions(
    rgb: np.ndarray, cut_borders: bool, mirror: bool = True, aspects: tuple[float, ...] = VIDEO_ASPECTS
) -> list[QueryRegion]:
    """The parts of a query to search: the whole image; with mirror, the whole image flipped (screenshots are
    often posted flipped); with cut_borders, the picture found inside black borders, inside a player window or
    page (a rectangle of one of `aspects`), and seen at an angle in a photo of a screen (when they differ from
    what is listed)."""
    first = first_regions(rgb, cut_borders)
    return first + further_regions(rgb, first, cut_borders, mirror, aspects)


def first_regions(rgb: np.ndarray, cut_borders: bool) -> list[QueryRegion]:
    """The part of a query searched first, one CNN image: with cut_borders, the picture inside black borders
    when it has some (found in a fraction of a millisecond), else the whole image."""
    if cut_borders:
        found = content_box(rgb)
        if is_cropped(found, rgb.shape):
            # The index holds episodes' pictures without their bars: the whole image is searched only when
            # this finds no confident match (a dark picture's edges taken for borders).
            return [QueryRegion("borders_cut", found, found.crop(rgb))]
    return [_whole_image(rgb)]


def _whole_image(rgb: np.ndarray) -> QueryRegion:
    h, w = rgb.shape[:2]
    return QueryRegion("full", Box(0, 0, w, h), rgb)


def further_regions(
    rgb: np.ndarray,
    listed: list[QueryRegion],
    cut_borders: bool,
    mirror: bool = True,
    aspects: tuple[float, ...] = VIDEO_ASPECTS,
) -> list[QueryRegion]:
    """The parts of a query searched when the first ones found no confident match: the whole image when it was
    not searched first; with mirror, the whole image flipped; with cut_borders, the picture inside a player
    window or page, and seen at an angle in a photo of a screen (finding those costs several milliseconds), when
    they differ from what is listed."""
    h, w = rgb.shape[:2]
    regions = [] if any(r.name == "full" for r in listed) else [_whole_image(rgb)]
    if mirror:
        regions.append(QueryRegion("flipped", Box(0, 0, w, h), np.ascontiguousarray(rgb[:, ::-1])))
    if cut_borders:
        for window in find_windows(rgb, aspects):
            # A film shown in a player keeps its own black bars inside the window.
            inner = content_box(window.crop(rgb))
            window = Box(window.x + inner.x, window.y + inner.y, inner.w, inner.h)
            if all(boxes_differ(window, r.box) for r in [*listed, *regions]):
                regions.append(QueryRegion("window", window, window.crop(rgb)))
        corners = find_screen(rgb)
        if corners is not None:
            picture = unwarp(rgb, corners)
            regions.append(QueryRegion("screen", bounding_box(corners, rgb.shape), content_box(picture).crop(picture)))
    return regions
