import Alert from '@mui/material/Alert';
import Box from '@mui/material/Box';
import Chip from '@mui/material/Chip';
import CircularProgress from '@mui/material/CircularProgress';
import Link from '@mui/material/Link';
import Paper from '@mui/material/Paper';
import Stack from '@mui/material/Stack';
import Table from '@mui/material/Table';
import TableBody from '@mui/material/TableBody';
import TableCell from '@mui/material/TableCell';
import TableContainer from '@mui/material/TableContainer';
import TableHead from '@mui/material/TableHead';
import TableRow from '@mui/material/TableRow';
import Typography from '@mui/material/Typography';
import { useEffect, useRef } from 'react';
import { Link as RouterLink } from 'react-router';
import { OutcomeDots } from '../components/OutcomeDots';
import { TestStatusChip, TestrunStatusChip } from '../components/StatusChip';
import { TestCounts } from '../components/TestCounts';
import type { GetTestHistoryResponse, Suite, SuiteTest } from '../gen/testrunner/v1/testrun_pb';
import { dateOf, durationMs, formatDuration, formatTime } from '../lib/format';
import { NotFoundPage } from './NotFoundPage';

/** One test's history as the page shows it, while loading or once loaded. */
export interface HistoryState {
  name: string;
  history?: GetTestHistoryResponse | undefined;
  error?: string | undefined;
}

export interface SuitePageProps {
  name: string;
  suite?: Suite | undefined;
  notFound: boolean;
  error?: string | undefined;
  /** The test whose history is open, if any. */
  selected?: HistoryState | undefined;
  onSelectTest: (name: string) => void;
}

function TestrunLinks(props: { ids: readonly bigint[]; testName: string }) {
  return (
    <Stack direction="row" spacing={0.75} useFlexGap sx={{ flexWrap: 'wrap' }} data-testid="flipped-in">
      {props.ids.map((id) => (
        <Link
          key={String(id)}
          component={RouterLink}
          to={`/testruns/${id}?test=${encodeURIComponent(props.testName)}`}
          onClick={(e) => e.stopPropagation()}
        >
          #{String(id)}
        </Link>
      ))}
    </Stack>
  );
}

function median(t: SuiteTest | GetTestHistoryResponse): string {
  return t.median !== undefined ? formatDuration(durationMs(t.median)) : '—';
}

function TestTable(props: {
  label: string;
  tests: readonly SuiteTest[];
  flips: boolean;
  selected?: string | undefined;
  onSelect: (name: string) => void;
  empty: string;
}) {
  return (
    <Paper sx={{ overflow: 'hidden' }}>
      <Typography variant="h6" component="h2" sx={{ px: 2, pt: 1.5 }}>
        {props.label}
      </Typography>
      <TableContainer>
        <Table size="small" aria-label={props.label}>
          <TableHead>
            <TableRow>
              <TableCell>Test</TableCell>
              <TableCell align="right">Median</TableCell>
              <TableCell align="right" sx={{ display: { xs: 'none', sm: 'table-cell' } }}>
                Runs
              </TableCell>
              {props.flips && <TableCell>Flipped in</TableCell>}
              <TableCell>Last outcomes</TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {props.tests.map((t) => (
              <TableRow
                key={t.name}
                hover
                selected={props.selected === t.name}
                onClick={() => props.onSelect(t.name)}
                data-testid={props.flips ? 'flaky-test' : 'slow-test'}
                data-name={t.name}
                sx={{ cursor: 'pointer' }}
              >
                <TableCell sx={{ fontFamily: 'monospace', overflowWrap: 'anywhere' }}>{t.name}</TableCell>
                <TableCell align="right" sx={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
                  {median(t)}
                </TableCell>
                <TableCell align="right" sx={{ display: { xs: 'none', sm: 'table-cell' } }}>
                  {t.samples}
                </TableCell>
                {props.flips && (
                  <TableCell>
                    <Box component="span" sx={{ mr: 1, fontWeight: 600 }}>
                      {t.flips}×
                    </Box>
                    <TestrunLinks ids={t.flippedIn} testName={t.name} />
                  </TableCell>
                )}
                <TableCell>
                  <OutcomeDots name={t.name} outcomes={t.last} />
                </TableCell>
              </TableRow>
            ))}
            {props.tests.length === 0 && (
              <TableRow>
                <TableCell colSpan={props.flips ? 5 : 4} align="center" sx={{ py: 3, color: 'text.secondary' }}>
                  {props.empty}
                </TableCell>
              </TableRow>
            )}
          </TableBody>
        </Table>
      </TableContainer>
    </Paper>
  );
}

function HistoryPanel(props: { state: HistoryState }) {
  const { history: h, error, name } = props.state;
  // Picked from a table further down: bring the history into view.
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    ref.current?.scrollIntoView?.({ block: 'nearest', behavior: 'smooth' });
  }, [name]);
  return (
    <Paper ref={ref} sx={{ p: 2 }} data-testid="test-history" data-name={name}>
      <Stack direction="row" spacing={1} sx={{ alignItems: 'center', flexWrap: 'wrap', mb: 1 }}>
        <Typography variant="h6" component="h2" sx={{ fontFamily: 'monospace' }}>
          {name}
        </Typography>
        {h?.flaky === true && <Chip size="small" color="secondary" label="flaky" data-testid="history-flaky" />}
        {h !== undefined && (
          <Typography variant="body2" color="text.secondary">
            median {median(h)} over {h.samples} runs
          </Typography>
        )}
      </Stack>
      {error !== undefined && <Alert severity="error">{error}</Alert>}
      {h === undefined && error === undefined && <CircularProgress size={24} />}
      {h !== undefined && h.flippedIn.length > 0 && (
        <Stack direction="row" spacing={1} sx={{ alignItems: 'center', mb: 1 }}>
          <Typography variant="body2">Flipped in</Typography>
          <TestrunLinks ids={h.flippedIn} testName={name} />
        </Stack>
      )}
      {h !== undefined && (
        <TableContainer>
          <Table size="small" aria-label="Outcomes">
            <TableHead>
              <TableRow>
                <TableCell>Testrun</TableCell>
                <TableCell>Outcome</TableCell>
                <TableCell align="right">Attempts</TableCell>
                <TableCell align="right">Duration</TableCell>
                <TableCell>Runner</TableCell>
                <TableCell sx={{ display: { xs: 'none', md: 'table-cell' } }}>Workspace</TableCell>
                <TableCell>Finished</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {h.outcomes.map((o) => (
                <TableRow key={`${o.testrunId}-${o.testId}`} data-testid="history-row">
                  <TableCell>
                    <Link component={RouterLink} to={`/testruns/${o.testrunId}?test=${encodeURIComponent(name)}`}>
                      #{String(o.testrunId)}
                    </Link>
                  </TableCell>
                  <TableCell>
                    <TestStatusChip status={o.status} />
                  </TableCell>
                  <TableCell align="right">{o.attempts}</TableCell>
                  <TableCell align="right" sx={{ whiteSpace: 'nowrap' }}>
                    {o.duration !== undefined ? formatDuration(durationMs(o.duration)) : ''}
                  </TableCell>
                  <TableCell>{o.runner}</TableCell>
                  <TableCell sx={{ display: { xs: 'none', md: 'table-cell' }, fontFamily: 'monospace' }}>
                    {o.workspace !== undefined ? o.workspace.hash.slice(0, 12) : ''}
                  </TableCell>
                  <TableCell sx={{ whiteSpace: 'nowrap' }}>{formatTime(dateOf(o.finishedAt))}</TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        </TableContainer>
      )}
    </Paper>
  );
}

/** One suite: slowest and flakiest tests with their last outcomes, recent Testruns, a test's history. */
export function SuitePage(props: SuitePageProps) {
  if (props.notFound) {
    return <NotFoundPage title="Suite not found" message={`No history is recorded for suite ${props.name}.`} />;
  }
  const s = props.suite;
  const sum = s?.summary;
  return (
    <Stack spacing={2}>
      <Stack direction="row" spacing={1.5} sx={{ alignItems: 'baseline', flexWrap: 'wrap' }}>
        <Typography variant="h5" component="h1" data-testid="suite-name">
          Suite {props.name}
        </Typography>
        {sum !== undefined && (
          <Typography variant="body2" color="text.secondary">
            {sum.tests} tests, {sum.flakyTests} flaky, {sum.testruns} Testruns, last run {formatTime(dateOf(sum.lastRunAt))}
          </Typography>
        )}
      </Stack>
      {props.error !== undefined && <Alert severity="error">{props.error}</Alert>}
      {s === undefined && props.error === undefined && <CircularProgress />}
      {props.selected !== undefined && <HistoryPanel state={props.selected} />}
      {s !== undefined && (
        <>
          <TestTable
            label="Slowest tests"
            tests={s.slowest}
            flips={false}
            selected={props.selected?.name}
            onSelect={props.onSelectTest}
            empty="No durations recorded yet."
          />
          <TestTable
            label="Flakiest tests"
            tests={s.flakiest}
            flips
            selected={props.selected?.name}
            onSelect={props.onSelectTest}
            empty="No test of this suite has flipped."
          />
          <Paper sx={{ overflow: 'hidden' }}>
            <Typography variant="h6" component="h2" sx={{ px: 2, pt: 1.5 }}>
              Recent Testruns
            </Typography>
            <TableContainer>
              <Table size="small" aria-label="Recent Testruns">
                <TableHead>
                  <TableRow>
                    <TableCell>ID</TableCell>
                    <TableCell>Status</TableCell>
                    <TableCell>User</TableCell>
                    <TableCell>Tests</TableCell>
                    <TableCell>Created</TableCell>
                  </TableRow>
                </TableHead>
                <TableBody>
                  {s.testruns.map((t) => (
                    <TableRow key={String(t.id)} data-testid="suite-testrun" data-id={String(t.id)}>
                      <TableCell>
                        <Link component={RouterLink} to={`/testruns/${t.id}`}>
                          #{String(t.id)}
                        </Link>
                      </TableCell>
                      <TableCell>
                        <TestrunStatusChip status={t.status} />
                      </TableCell>
                      <TableCell>{t.username}</TableCell>
                      <TableCell>
                        <TestCounts counts={t.counts} />
                      </TableCell>
                      <TableCell sx={{ whiteSpace: 'nowrap' }}>{formatTime(dateOf(t.createdAt))}</TableCell>
                    </TableRow>
                  ))}
                </TableBody>
              </Table>
            </TableContainer>
          </Paper>
        </>
      )}
    </Stack>
  );
}
