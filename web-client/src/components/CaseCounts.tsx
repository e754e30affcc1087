import Box from '@mui/material/Box';
import Tooltip from '@mui/material/Tooltip';
import type { CaseCounts as Counts } from '../gen/testrunner/v1/testrun_pb';

/** `2 ✗ 12` (failed and errored, of all cases), coloured, with a tooltip; empty without cases. */
export function CaseCounts(props: { counts: Counts | undefined }) {
  const c = props.counts;
  if (c === undefined || c.total === 0) return null;
  const bad = c.failed + c.errored;
  const title = `${c.total} cases: ${c.passed} passed, ${c.failed} failed, ${c.errored} errored, ${c.skipped} skipped`;
  return (
    <Tooltip title={title}>
      <Box
        component="span"
        aria-label={title}
        data-testid="case-counts"
        data-failed={bad}
        data-total={c.total}
        sx={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}
      >
        <Box component="span" sx={{ color: bad > 0 ? 'error.main' : 'text.disabled' }}>
          {bad} ✗
        </Box>{' '}
        <Box component="span" sx={{ color: 'text.secondary' }}>
          {c.total}
        </Box>
      </Box>
    </Tooltip>
  );
}
