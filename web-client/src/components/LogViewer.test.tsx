import { render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { LogViewer } from './LogViewer';

function renderLog(total: number, follow: boolean, line = (i: number) => `line ${i}`) {
  const ensureRange = vi.fn();
  const onFollowChange = vi.fn();
  const view = render(
    <LogViewer
      total={total}
      getLine={line}
      ensureRange={ensureRange}
      version={0}
      follow={follow}
      onFollowChange={onFollowChange}
    />,
  );
  return { ...view, ensureRange, onFollowChange };
}

describe('LogViewer', () => {
  it('renders a window of a million-line log, not the whole log', () => {
    const { container, ensureRange } = renderLog(1_000_000, false);
    const rows = container.querySelectorAll('.log-line');
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.length).toBeLessThan(200);
    expect(rows[0]?.textContent).toBe('1line 0');
    expect(ensureRange).toHaveBeenCalledWith(0, rows.length);
  });

  it('shows the end of the log while following', () => {
    const { container } = renderLog(1_000_000, true);
    const rows = [...container.querySelectorAll('.log-line')];
    expect(rows.at(-1)?.getAttribute('data-line')).toBe('999999');
  });

  it('renders ANSI colours as styled spans, not escape codes', () => {
    renderLog(1, false, () => '\x1b[31mFAILED\x1b[0m test_x');
    const failed = screen.getByText('FAILED');
    expect(failed.style.color).toBe('rgb(241, 76, 76)');
    expect(screen.getByRole('log').textContent).not.toContain('\x1b');
  });

  it('shows a placeholder for lines still loading', () => {
    const { container } = renderLog(3, false, (i) => (i === 1 ? undefined : `l${i}`) as string);
    expect(container.querySelector('[data-line="1"]')?.textContent).toBe('2…');
  });
});
