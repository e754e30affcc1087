import Button from '@mui/material/Button';
import Stack from '@mui/material/Stack';
import Table from '@mui/material/Table';
import TableBody from '@mui/material/TableBody';
import TableCell from '@mui/material/TableCell';
import TableHead from '@mui/material/TableHead';
import TableRow from '@mui/material/TableRow';
import Typography from '@mui/material/Typography';
import type { Attempt } from '../gen/testrunner/v1/testrun_pb';
import { dateOf, durationMs, formatDuration, spanMs } from '../lib/format';
import { testStatusName } from '../lib/status';
import { TestStatusChip } from './StatusChip';

export interface AttemptsPanelProps {
  attempts: readonly Attempt[];
  /** The attempt whose log and cases show; undefined: all of them. */
  selected: number | undefined;
  onSelect: (attempt: number | undefined) => void;
  now: number;
}

function attemptDuration(a: Attempt, now: number): number | undefined {
  if (a.duration !== undefined) return durationMs(a.duration);
  return spanMs(dateOf(a.startedAt), dateOf(a.finishedAt), now);
}

/** Every run of one test (retries, runs lost with a runner); picking one filters the log to its lines. */
export function AttemptsPanel(props: AttemptsPanelProps) {
  return (
    <div data-testid="attempts">
      <Stack direction="row" spacing={1} sx={{ alignItems: 'center', mb: 0.5 }}>
        <Typography variant="subtitle2" component="h3">
          {props.attempts.length} attempts
        </Typography>
        <Button
          size="small"
          variant={props.selected === undefined ? 'contained' : 'text'}
          onClick={() => props.onSelect(undefined)}
          aria-pressed={props.selected === undefined}
          data-testid="attempt-all"
        >
          All attempts
        </Button>
      </Stack>
      <Table size="small" aria-label="Attempts">
        <TableHead>
          <TableRow>
            <TableCell>#</TableCell>
            <TableCell>Status</TableCell>
            <TableCell>Runner</TableCell>
            <TableCell align="right">Exit</TableCell>
            <TableCell align="right">Duration</TableCell>
            <TableCell>Error</TableCell>
          </TableRow>
        </TableHead>
        <TableBody>
          {props.attempts.map((a) => (
            <TableRow
              key={a.attempt}
              hover
              selected={props.selected === a.attempt}
              aria-selected={props.selected === a.attempt}
              onClick={() => props.onSelect(a.attempt)}
              data-testid="attempt-row"
              data-attempt={a.attempt}
              data-status={testStatusName(a.status)}
              sx={{ cursor: 'pointer' }}
            >
              <TableCell>{a.attempt}</TableCell>
              <TableCell>
                <TestStatusChip status={a.status} />
              </TableCell>
              <TableCell>{a.runner}</TableCell>
              <TableCell align="right">{a.exitCode ?? ''}</TableCell>
              <TableCell align="right" sx={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
                {formatDuration(attemptDuration(a, props.now))}
              </TableCell>
              <TableCell sx={{ color: 'error.main', overflowWrap: 'anywhere' }}>{a.error}</TableCell>
            </TableRow>
          ))}
        </TableBody>
      </Table>
    </div>
  );
}
