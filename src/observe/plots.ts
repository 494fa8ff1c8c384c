// Charts as inline SVG strings, rendered on the server: the run report needs no script and no
// network to open, and the live status page swaps in the same SVG that the server re-renders.
// Two kinds: line charts (series of x/y points, gaps allowed) and stacked bar charts.
import type { ModelSizes } from '../storage/model-dir.ts';

export interface Point {
  x: number;
  /** null leaves a gap (a loss that was not measured). */
  y: number | null;
}

export interface Series {
  name: string;
  points: Point[];
  color?: string;
  dashed?: boolean;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Force these values into the y range (e.g. 0 and 1 for fractions). */
  yInclude?: number[];
  formatY?: (value: number) => string;
  formatX?: (value: number) => string;
  /** x is a count (rounds, steps): no ticks between integers. */
  integerX?: boolean;
  /** A dashed vertical marker, e.g. the best round. */
  marker?: { x: number; label: string };
}

export interface BarStack {
  name: string;
  color: string;
  /** One value per category. */
  values: number[];
}

export interface BarChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  categories: string[];
  stacks: BarStack[];
  formatY?: (value: number) => string;
}

/** Tableau 10: distinct on screen and in print. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f', '#bab0ac'];

const WIDTH = 640;
const HEIGHT = 320;
const MARGIN = { left: 70, right: 18, top: 34, bottom: 78 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;
/** Past this many points per series, circles would hide the line. */
const MAX_MARKERS = 160;

export function lineChart(options: LineChartOptions): string {
  const series = options.series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length] }));
  const points = series.flatMap((s) => s.points.filter(isMeasured));
  const formatY = options.formatY ?? formatNumber;
  const formatX = options.formatX ?? formatNumber;
  if (points.length === 0) return frame(options.title, 0, `${axisLabels(options.xLabel, options.yLabel)}${noData()}${legend(series)}`);
  const xs = points.map((p) => p.x);
  const ys = [...points.map((p) => p.y), ...(options.yInclude ?? [])];
  const x = scale(Math.min(...xs), Math.max(...xs), MARGIN.left, MARGIN.left + PLOT_W, false, options.integerX ? 1 : 0);
  const y = scale(Math.min(...ys), Math.max(...ys), MARGIN.top + PLOT_H, MARGIN.top, true);
  const parts: string[] = [grid(x, y, formatX, formatY), axisLabels(options.xLabel, options.yLabel)];
  if (options.marker) {
    const mx = x.map(options.marker.x).toFixed(1);
    parts.push(
      `<line class="marker" x1="${mx}" x2="${mx}" y1="${MARGIN.top}" y2="${MARGIN.top + PLOT_H}" stroke="#888" stroke-dasharray="4 3"/>`,
    );
    // Anchored so the label stays inside the chart when the marker sits near an edge.
    const anchor = Number(mx) > WIDTH - MARGIN.right - 60 ? 'end' : Number(mx) < MARGIN.left + 60 ? 'start' : 'middle';
    parts.push(
      `<text x="${mx}" y="${MARGIN.top - 4}" text-anchor="${anchor}" font-size="11" fill="#555">${escapeXml(options.marker.label)}</text>`,
    );
  }
  for (const s of series) {
    const measured = s.points.filter(isMeasured);
    const d = pathData(s.points, x.map, y.map);
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (measured.length <= MAX_MARKERS) {
      for (const p of measured) {
        parts.push(
          `<circle class="point" cx="${x.map(p.x).toFixed(1)}" cy="${y.map(p.y).toFixed(1)}" r="3" fill="${s.color}"><title>${escapeXml(`${s.name}: ${formatY(p.y)} at ${options.xLabel.toLowerCase()} ${formatX(p.x)}`)}</title></circle>`,
        );
      }
    }
  }
  parts.push(legend(series));
  return frame(options.title, points.length, parts.join(''));
}

export function stackedBarChart(options: BarChartOptions): string {
  const { categories, stacks } = options;
  const formatY = options.formatY ?? formatNumber;
  const totals = categories.map((_, i) => stacks.reduce((sum, s) => sum + Math.max(0, s.values[i] ?? 0), 0));
  const series = stacks.map((s) => ({ name: s.name, color: s.color, points: [] }));
  if (categories.length === 0 || Math.max(...totals) <= 0)
    return frame(options.title, 0, `${axisLabels(options.xLabel, options.yLabel)}${noData()}${legend(series)}`);
  const y = scale(0, Math.max(...totals), MARGIN.top + PLOT_H, MARGIN.top, true);
  const slot = PLOT_W / categories.length;
  const barWidth = Math.max(1, slot * 0.7);
  const parts: string[] = [yGrid(y, formatY), axisLabels(options.xLabel, options.yLabel)];
  // Label every k-th category so the labels never overlap.
  const every = Math.max(1, Math.ceil(categories.length / 16));
  categories.forEach((category, i) => {
    const left = MARGIN.left + i * slot + (slot - barWidth) / 2;
    let base = 0;
    for (const stack of stacks) {
      const value = Math.max(0, stack.values[i] ?? 0);
      if (value <= 0) continue;
      const top = y.map(base + value);
      const height = y.map(base) - top;
      parts.push(
        `<rect class="bar" x="${left.toFixed(1)}" y="${top.toFixed(1)}" width="${barWidth.toFixed(1)}" height="${Math.max(0.5, height).toFixed(1)}" fill="${stack.color}"><title>${escapeXml(`${category} · ${stack.name}: ${formatY(value)}`)}</title></rect>`,
      );
      base += value;
    }
    if (i % every === 0) {
      parts.push(
        `<text x="${(left + barWidth / 2).toFixed(1)}" y="${MARGIN.top + PLOT_H + 16}" text-anchor="middle" font-size="11" fill="#444">${escapeXml(truncate(category, Math.max(4, Math.floor((slot * every) / 7))))}</text>`,
      );
    }
  });
  parts.push(
    `<line x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_W}" y1="${MARGIN.top + PLOT_H}" y2="${MARGIN.top + PLOT_H}" stroke="#444"/>`,
  );
  parts.push(legend(series));
  return frame(options.title, categories.length, parts.join(''), 'bars');
}

/** "0.0123", "12.3", "4.57M": three significant digits, SI suffixes for large values. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs === 0) return '0';
  if (abs >= 1e4) {
    const units = ['k', 'M', 'G', 'T', 'P', 'E'];
    let scaled = value;
    let unit = -1;
    while (Math.abs(scaled) >= 1000 && unit < units.length - 1) {
      scaled /= 1000;
      unit++;
    }
    return `${trimZeros(scaled.toPrecision(3))}${units[unit]}`;
  }
  if (abs >= 100) return value.toFixed(0);
  if (abs < 1e-3) return value.toExponential(1);
  return trimZeros(value.toPrecision(3));
}

export function formatPercent(value: number): string {
  return `${trimZeros((100 * value).toPrecision(3))}%`;
}

/** "142 kB / 3.2 MB (4.4%)": model/model.sparse.safetensors against the dense float32 weights. */
export function formatModelSizes({ sparseBytes, denseBytes }: ModelSizes): string {
  const size = (bytes: number) => (bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`);
  return `${size(sparseBytes)} / ${size(denseBytes)} (${((100 * sparseBytes) / denseBytes).toFixed(1)}%)`;
}

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

// ─── pieces ───────────────────────────────────────────────────────────────────────────────────

interface Scale {
  map(value: number): number;
  ticks: number[];
}

function isMeasured(p: Point): p is { x: number; y: number } {
  return p.y !== null && Number.isFinite(p.y) && Number.isFinite(p.x);
}

/** A linear scale over [min, max] widened to round tick values (`nice`), onto [from, to] pixels. */
function scale(min: number, max: number, from: number, to: number, nice: boolean, minStep = 0): Scale {
  if (min === max) {
    const pad = minStep || (min === 0 ? 1 : Math.abs(min) * 0.1);
    min -= pad;
    max += pad;
  }
  const step = Math.max(minStep, tickStep(min, max, 5));
  if (nice) {
    min = Math.floor(min / step) * step;
    max = Math.ceil(max / step) * step;
  }
  const ticks: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return { map: (v) => from + ((v - min) / (max - min)) * (to - from), ticks };
}

/** 1, 2 or 5 times a power of ten, giving about `count` ticks. */
function tickStep(min: number, max: number, count: number): number {
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction >= 5 ? 10 : fraction >= 2 ? 5 : fraction >= 1 ? 2 : 1) * power;
}

function pathData(points: Point[], mapX: (v: number) => number, mapY: (v: number) => number): string {
  let d = '';
  let pen = false;
  for (const p of points) {
    if (!isMeasured(p)) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${mapX(p.x).toFixed(1)} ${mapY(p.y).toFixed(1)}`;
    pen = true;
  }
  return d;
}

function grid(x: Scale, y: Scale, formatX: (v: number) => string, formatY: (v: number) => string): string {
  const bottom = MARGIN.top + PLOT_H;
  const parts = [yGrid(y, formatY)];
  for (const t of x.ticks) {
    const px = x.map(t).toFixed(1);
    parts.push(`<line x1="${px}" x2="${px}" y1="${bottom}" y2="${bottom + 4}" stroke="#444"/>`);
    parts.push(`<text x="${px}" y="${bottom + 16}" text-anchor="middle" font-size="11" fill="#444">${escapeXml(formatX(t))}</text>`);
  }
  parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_W}" y1="${bottom}" y2="${bottom}" stroke="#444"/>`);
  return parts.join('');
}

function yGrid(y: Scale, formatY: (v: number) => string): string {
  return y.ticks
    .map((t) => {
      const py = y.map(t).toFixed(1);
      return `<line x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_W}" y1="${py}" y2="${py}" stroke="#e4e4e4"/><text x="${MARGIN.left - 6}" y="${py}" dy="4" text-anchor="end" font-size="11" fill="#444">${escapeXml(formatY(t))}</text>`;
    })
    .join('');
}

function axisLabels(xLabel: string, yLabel: string): string {
  const midY = MARGIN.top + PLOT_H / 2;
  return (
    `<text x="${MARGIN.left + PLOT_W / 2}" y="${MARGIN.top + PLOT_H + 34}" text-anchor="middle" font-size="12" fill="#222">${escapeXml(xLabel)}</text>` +
    `<text x="16" y="${midY}" text-anchor="middle" font-size="12" fill="#222" transform="rotate(-90 16 ${midY})">${escapeXml(yLabel)}</text>`
  );
}

function legend(series: { name: string; color: string; dashed?: boolean }[]): string {
  let left = MARGIN.left;
  let row = 0;
  const parts: string[] = [];
  for (const s of series) {
    const width = 28 + 6.5 * s.name.length;
    if (left + width > WIDTH - MARGIN.right && left > MARGIN.left) {
      left = MARGIN.left;
      row++;
    }
    const top = HEIGHT - 28 + row * 16;
    parts.push(
      `<line x1="${left}" x2="${left + 18}" y1="${top}" y2="${top}" stroke="${s.color}" stroke-width="${s.dashed ? 2 : 6}"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    parts.push(`<text x="${left + 23}" y="${top}" dy="4" font-size="11" fill="#222">${escapeXml(s.name)}</text>`);
    left += width + 12;
  }
  return `<g class="legend">${parts.join('')}</g>`;
}

function noData(): string {
  return `<text x="${MARGIN.left + PLOT_W / 2}" y="${MARGIN.top + PLOT_H / 2}" text-anchor="middle" font-size="13" fill="#888">no data yet</text>`;
}

/** The outer <svg>; data-points (or data-bars) counts what is plotted, for tests and scrapers. */
function frame(title: string, count: number, body: string, kind: 'points' | 'bars' = 'points'): string {
  return (
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${escapeXml(title)}" data-${kind}="${count}">` +
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>` +
    `<text x="${MARGIN.left}" y="20" font-size="14" font-weight="600" fill="#111">${escapeXml(title)}</text>${body}</svg>`
  );
}

function truncate(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, Math.max(1, length - 1))}…`;
}

function trimZeros(text: string): string {
  return text.includes('e') || !text.includes('.') ? text : text.replace(/\.?0+$/, '');
}
