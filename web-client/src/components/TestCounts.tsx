import Box from '@mui/material/Box';
import Tooltip from '@mui/material/Tooltip';
import type { TestCounts as Counts } from '../gen/testrunner/v1/testrun_pb';

/** The colour FLAKY shows in everywhere (the theme's amber secondary). */
export const FLAKY_COLOR = 'secondary.dark';

const PARTS = [
  { key: 'passed', label: 'passed', color: 'success.main' },
  { key: 'failed', label: 'failed', color: 'error.main' },
  { key: 'running', label: 'running', color: 'info.main' },
  { key: 'queued', label: 'queued', color: 'text.secondary' },
] as const;

/**
 * `3 / 1 / 2 / 0` (passed / failed / running / queued), coloured, with a
 * tooltip; `· 3 flaky` after it when tests passed only on a retry (they are
 * counted in passed too).
 */
export function TestCounts(props: { counts: Counts | undefined }) {
  const c = props.counts;
  const title =
    c === undefined
      ? ''
      : `${c.passed} passed, ${c.failed} failed, ${c.running} running, ${c.queued} queued` +
        (c.cancelled > 0 ? `, ${c.cancelled} cancelled` : '') +
        (c.flaky > 0 ? `, ${c.flaky} flaky` : '') +
        ` of ${c.total}`;
  return (
    <Tooltip title={title}>
      <Box component="span" aria-label={title} sx={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
        {PARTS.map((p, i) => (
          <span key={p.key}>
            {i > 0 && (
              <Box component="span" sx={{ color: 'text.disabled', mx: 0.5 }}>
                /
              </Box>
            )}
            <Box component="span" sx={{ color: (c?.[p.key] ?? 0) > 0 ? p.color : 'text.disabled' }}>
              {c?.[p.key] ?? 0}
            </Box>
          </span>
        ))}
        {(c?.flaky ?? 0) > 0 && (
          <Box component="span" data-testid="flaky-count" sx={{ color: FLAKY_COLOR, ml: 1, fontWeight: 600 }}>
            {c?.flaky} flaky
          </Box>
        )}
      </Box>
    </Tooltip>
  );
}
