// Display helpers for times, durations and statuses.

import type { Duration, Timestamp } from '@bufbuild/protobuf/wkt';
import { timestampDate } from '@bufbuild/protobuf/wkt';

/** A Timestamp as a Date, or undefined when unset. */
export function dateOf(ts: Timestamp | undefined): Date | undefined {
  return ts === undefined ? undefined : timestampDate(ts);
}

/** Milliseconds of a protobuf Duration. */
export function durationMs(d: Duration): number {
  return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

/** `2026-11-25 14:03:07` in local time: sortable and unambiguous. */
export function formatTime(date: Date | undefined): string {
  if (date === undefined) return '';
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ` +
    `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`
  );
}

/** A short human duration: `850ms`, `4.2s`, `3m 05s`, `1h 02m`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)}s`;
  const total = Math.floor(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  const p = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}h ${p(m)}m` : `${m}m ${p(sec)}s`;
}

/**
 * Wall time between two instants; a span still open (no `end`) runs up to
 * `now`, so running Testruns and tests show a growing duration.
 */
export function spanMs(start: Date | undefined, end: Date | undefined, now: number): number | undefined {
  if (start === undefined) return undefined;
  return (end?.getTime() ?? now) - start.getTime();
}

/** `12,345` */
export function formatCount(n: number | bigint): string {
  return n.toLocaleString('en-US');
}

/** `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB` */
export function formatBytes(n: number | bigint): string {
  const b = Number(n);
  if (b < 1024) return `${b} B`;
  if (b < 1024 ** 2) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 1024 ** 3) return `${(b / 1024 ** 2).toFixed(1)} MiB`;
  return `${(b / 1024 ** 3).toFixed(1)} GiB`;
}
