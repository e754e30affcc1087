// A virtualised, followable log view.
//
// Only the lines in view (plus a margin) exist in the DOM, each one fixed
// height, so a million-line log costs the same as a short one. Browsers cap
// an element's height (Firefox near 17.9 million px), so past MAX_SCROLL_PX
// the scrollbar maps proportionally onto the lines instead of 1:1.

import Box from '@mui/material/Box';
import { memo, useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState, type CSSProperties } from 'react';
import { DEFAULT_BG, DEFAULT_FG, markMatches, parseAnsi, type MarkedSegment } from '../lib/ansi';

/** Height of one log line in px (the font is sized to fit). */
export const LINE_HEIGHT = 20;
/** Tallest scrollable area used; more lines than fit are mapped proportionally. */
export const MAX_SCROLL_PX = 8_000_000;
/** Lines rendered above and below the visible ones. */
const OVERSCAN = 30;
/** Smallest height of the view, in px. */
const MIN_HEIGHT = 120;
/** Used until the container is measured (and in test DOMs without layout). */
const FALLBACK_HEIGHT = 480;

export interface LogViewerProps {
  /** Lines in the log. */
  total: number;
  /** Line `i`, or undefined while it is being loaded. */
  getLine: (i: number) => string | undefined;
  /** Asks for lines [from, to) to be loaded; called for what is on screen. */
  ensureRange: (from: number, to: number) => void;
  /** Changes whenever lines arrive, so the view re-reads them. */
  version: number;
  /** Keep the last line in view as lines arrive. */
  follow: boolean;
  /** The user scrolled away from the end (false) or back to it (true). */
  onFollowChange: (follow: boolean) => void;
  /** Text to highlight (search). */
  highlight?: string;
  /** Scroll to and mark this line; a new `seq` repeats the jump. */
  focus?: { line: number; seq: number } | undefined;
  /** Tallest the view grows (CSS length); a short log takes only the room it needs. */
  maxHeight?: string;
}

export function LogViewer(props: LogViewerProps) {
  const { total, getLine, ensureRange, version, follow, onFollowChange, highlight = '', focus } = props;
  const ref = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewH, setViewH] = useState(FALLBACK_HEIGHT);

  useLayoutEffect(() => {
    const el = ref.current;
    if (el === null) return undefined;
    const measure = () => setViewH(el.clientHeight > 0 ? el.clientHeight : FALLBACK_HEIGHT);
    measure();
    if (typeof ResizeObserver === 'undefined') return undefined;
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const realH = total * LINE_HEIGHT;
  const virtH = Math.min(realH, MAX_SCROLL_PX);
  const maxVirt = Math.max(0, virtH - viewH);
  const maxReal = Math.max(0, realH - viewH);
  const top = Math.min(scrollTop, maxVirt);
  const realTop = maxVirt > 0 ? (top * maxReal) / maxVirt : 0;
  const first = Math.max(0, Math.floor(realTop / LINE_HEIGHT) - OVERSCAN);
  const last = Math.min(total, Math.ceil((realTop + viewH) / LINE_HEIGHT) + OVERSCAN);

  useEffect(() => {
    ensureRange(first, last);
  }, [ensureRange, first, last, total, version]);

  // Following: stay at the end as the log grows.
  useLayoutEffect(() => {
    const el = ref.current;
    if (!follow || el === null) return;
    el.scrollTop = maxVirt;
    setScrollTop(maxVirt);
  }, [follow, maxVirt]);

  // A search hit: bring the line to the middle of the view.
  const [active, setActive] = useState<number>();
  useLayoutEffect(() => {
    const el = ref.current;
    if (focus === undefined || el === null) return;
    const target = Math.max(0, focus.line * LINE_HEIGHT - viewH / 2);
    const virt = maxReal > 0 ? Math.min(maxVirt, (target * maxVirt) / maxReal) : 0;
    el.scrollTop = virt;
    setScrollTop(virt);
    setActive(focus.line);
    // Only a new focus request scrolls; growth of the log must not.
  }, [focus?.seq]);

  const onScroll = useCallback(() => {
    const el = ref.current;
    if (el === null) return;
    setScrollTop(el.scrollTop);
    const atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - LINE_HEIGHT;
    if (follow && !atEnd) onFollowChange(false);
    else if (!follow && atEnd && el.scrollHeight > el.clientHeight) onFollowChange(true);
  }, [follow, onFollowChange]);

  const gutter = String(Math.max(total, 1)).length;
  const rows = [];
  for (let i = first; i < last; i++) {
    rows.push(
      <LogRow
        key={i}
        index={i}
        gutter={gutter}
        top={top + i * LINE_HEIGHT - realTop}
        text={getLine(i)}
        highlight={highlight}
        active={i === active}
      />,
    );
  }

  return (
    <Box
      ref={ref}
      onScroll={onScroll}
      tabIndex={0}
      role="log"
      aria-label="Test log"
      aria-live="off"
      data-testid="log-view"
      data-total={total}
      sx={{
        // Short logs take the room they need; long ones scroll inside.
        height: `min(${props.maxHeight ?? '60vh'}, ${Math.max(MIN_HEIGHT, realH + 16)}px)`,
        overflow: 'auto',
        position: 'relative',
        bgcolor: DEFAULT_BG,
        color: DEFAULT_FG,
        fontFamily: '"JetBrains Mono", "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace',
        fontSize: 13,
        borderRadius: 1,
        outline: 'none',
        '&:focus-visible': { boxShadow: (t) => `0 0 0 2px ${t.palette.primary.main}` },
      }}
    >
      <div style={{ height: virtH, position: 'relative', minWidth: '100%' }}>{rows}</div>
      {total === 0 && (
        <Box sx={{ position: 'absolute', inset: 0, display: 'grid', placeItems: 'center', color: '#888' }}>
          No output yet
        </Box>
      )}
    </Box>
  );
}

interface LogRowProps {
  index: number;
  gutter: number;
  top: number;
  text: string | undefined;
  highlight: string;
  active: boolean;
}

const LogRow = memo(function LogRow({ index, gutter, top, text, highlight, active }: LogRowProps) {
  const segments = useMemo<MarkedSegment[] | undefined>(
    () => (text === undefined ? undefined : markMatches(parseAnsi(text), highlight)),
    [text, highlight],
  );
  return (
    <div
      data-line={index}
      className="log-line"
      style={{
        position: 'absolute',
        top,
        left: 0,
        height: LINE_HEIGHT,
        lineHeight: `${LINE_HEIGHT}px`,
        whiteSpace: 'pre',
        minWidth: '100%',
        paddingRight: 16,
        background: active ? 'rgba(255, 213, 79, 0.18)' : undefined,
      }}
    >
      <span
        aria-hidden
        style={{
          display: 'inline-block',
          width: `${gutter + 2}ch`,
          paddingRight: '1ch',
          textAlign: 'right',
          color: '#6e7681',
          userSelect: 'none',
        }}
      >
        {index + 1}
      </span>
      {segments === undefined ? (
        <span style={{ color: '#6e7681' }}>…</span>
      ) : (
        segments.map((s, k) => (
          <span key={k} style={segmentStyle(s)}>
            {s.text}
          </span>
        ))
      )}
    </div>
  );
});

function segmentStyle(s: MarkedSegment): CSSProperties | undefined {
  if (s.fg === undefined && s.bg === undefined && !s.bold && !s.dim && !s.italic && !s.underline && !s.match) {
    return undefined;
  }
  const style: CSSProperties = {};
  if (s.fg !== undefined) style.color = s.fg;
  if (s.bg !== undefined) style.backgroundColor = s.bg;
  if (s.bold) style.fontWeight = 700;
  if (s.dim) style.opacity = 0.7;
  if (s.italic) style.fontStyle = 'italic';
  if (s.underline) style.textDecoration = 'underline';
  if (s.match) {
    style.backgroundColor = '#ffd54f';
    style.color = '#000';
  }
  return style;
}
