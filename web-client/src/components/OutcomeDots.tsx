import Box from '@mui/material/Box';
import Stack from '@mui/material/Stack';
import Tooltip from '@mui/material/Tooltip';
import { Link as RouterLink } from 'react-router';
import type { TestOutcome } from '../gen/testrunner/v1/testrun_pb';
import { durationMs, formatDuration } from '../lib/format';
import { testStatusColor, testStatusName } from '../lib/status';

/** A palette path for a status colour (`default` has no `.main`). */
function paletteOf(color: ReturnType<typeof testStatusColor>): string {
  return color === 'default' ? 'text.disabled' : `${color}.main`;
}

/**
 * A test's last outcomes as small coloured dots, newest first, each linking
 * to that Testrun with the test selected.
 */
export function OutcomeDots(props: { name: string; outcomes: readonly TestOutcome[] }) {
  return (
    <Stack direction="row" spacing={0.5} sx={{ alignItems: 'center' }} data-testid="outcome-dots">
      {props.outcomes.map((o) => {
        const status = testStatusName(o.status);
        const took = o.duration !== undefined ? ` in ${formatDuration(durationMs(o.duration))}` : '';
        const title = `#${o.testrunId}: ${status}${took}${o.attempts > 1 ? ` after ${o.attempts} attempts` : ''}`;
        return (
          <Tooltip key={`${o.testrunId}-${o.testId}`} title={title}>
            <Box
              component={RouterLink}
              to={`/testruns/${o.testrunId}?test=${encodeURIComponent(props.name)}`}
              aria-label={title}
              data-testid="outcome-dot"
              data-status={status}
              onClick={(e) => e.stopPropagation()}
              sx={{
                display: 'inline-block',
                width: 12,
                height: 12,
                borderRadius: '50%',
                bgcolor: paletteOf(testStatusColor(o.status)),
                flexShrink: 0,
              }}
            />
          </Tooltip>
        );
      })}
    </Stack>
  );
}
