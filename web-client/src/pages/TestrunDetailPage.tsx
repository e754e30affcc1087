import CancelIcon from '@mui/icons-material/CancelOutlined';
import DeleteIcon from '@mui/icons-material/DeleteOutlined';
import DownloadIcon from '@mui/icons-material/Download';
import ReplayIcon from '@mui/icons-material/Replay';
import KeyboardArrowDownIcon from '@mui/icons-material/KeyboardArrowDown';
import KeyboardArrowUpIcon from '@mui/icons-material/KeyboardArrowUp';
import SearchIcon from '@mui/icons-material/Search';
import VerticalAlignBottomIcon from '@mui/icons-material/VerticalAlignBottom';
import Alert from '@mui/material/Alert';
import Box from '@mui/material/Box';
import Button from '@mui/material/Button';
import CircularProgress from '@mui/material/CircularProgress';
import IconButton from '@mui/material/IconButton';
import InputAdornment from '@mui/material/InputAdornment';
import Paper from '@mui/material/Paper';
import Stack from '@mui/material/Stack';
import Table from '@mui/material/Table';
import TableBody from '@mui/material/TableBody';
import TableCell from '@mui/material/TableCell';
import TableContainer from '@mui/material/TableContainer';
import TableHead from '@mui/material/TableHead';
import TableRow from '@mui/material/TableRow';
import TextField from '@mui/material/TextField';
import Tooltip from '@mui/material/Tooltip';
import Typography from '@mui/material/Typography';
import Link from '@mui/material/Link';
import { useState, type ReactNode } from 'react';
import { Link as RouterLink } from 'react-router';
import { AttemptsPanel } from '../components/AttemptsPanel';
import { CaseCounts } from '../components/CaseCounts';
import { CasesPanel, type CasesPanelProps } from '../components/CasesPanel';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ConnectionChip } from '../components/ConnectionChip';
import { LogViewer } from '../components/LogViewer';
import { TestStatusChip, TestrunStatusChip } from '../components/StatusChip';
import { LabelChips } from '../components/Labels';
import { TestCounts } from '../components/TestCounts';
import { SetupTable, WorkspaceSummary } from '../components/WorkspacePanel';
import { Test_Status, type Test } from '../gen/testrunner/v1/testrun_pb';
import { dateOf, durationMs, formatCount, formatDuration, formatTime, spanMs } from '../lib/format';
import { describeError } from '../lib/errors';
import { canCancel, isTerminal } from '../lib/status';
import type { TestrunWatchState } from '../store/TestrunStore';
import { NotFoundPage } from './NotFoundPage';

/** The selected test's log, as the viewer reads it. */
export interface LogSource {
  total: number;
  getLine: (i: number) => string | undefined;
  ensureRange: (from: number, to: number) => void;
  version: number;
}

/** Search within the selected test's log. */
export interface LogSearch {
  query: string;
  onQueryChange: (q: string) => void;
  /** Finds the next (1) or previous (-1) matching line. */
  onFind: (direction: 1 | -1) => void;
  /** `searching…`, `no match`, `line 120`. */
  status?: string | undefined;
  focus?: { line: number; seq: number } | undefined;
}

export interface TestrunDetailPageProps {
  id: bigint;
  state: TestrunWatchState;
  now: number;
  selectedTest?: Test | undefined;
  onSelectTest: (test: Test) => void;
  log?: LogSource | undefined;
  follow: boolean;
  onFollowChange: (follow: boolean) => void;
  search: LogSearch;
  logUrl: (testName: string) => string;
  onCancel: () => Promise<void>;
  onDelete: () => Promise<void>;
  /**
   * Creates a new Testrun from this finished one (every test, or only those
   * that did not pass) and goes to it; rejects with the API's error.
   * Without it the page offers no rerun.
   */
  onRerun?: ((onlyFailed: boolean) => Promise<void>) | undefined;
  /** The selected test's JUnit cases, when it has any (or a note). */
  cases?: (CasesPanelProps & { queryKey: string }) | undefined;
  /** The attempt of the selected test whose log and cases show (tests with several attempts). */
  attempt?: { selected: number | undefined; onSelect: (attempt: number | undefined) => void } | undefined;
  /** Lines of a test's log known so far, live ones included. */
  liveLines?: ((t: Test) => number) | undefined;
}

function Meta(props: { label: string; children: ReactNode }) {
  return (
    <Box sx={{ minWidth: 0 }}>
      <Typography variant="caption" color="text.secondary" component="div">
        {props.label}
      </Typography>
      <Typography variant="body2" component="div" sx={{ overflowWrap: 'anywhere' }}>
        {props.children}
      </Typography>
    </Box>
  );
}

/** Tests that did not pass (FAILED, TIMED_OUT, ERROR, CANCELLED): what "Rerun failed" takes. */
export function notPassedCount(counts: { failed: number; cancelled: number } | undefined): number {
  return (counts?.failed ?? 0) + (counts?.cancelled ?? 0);
}

function testDuration(t: Test, now: number): number | undefined {
  if (t.duration !== undefined) return durationMs(t.duration);
  return spanMs(dateOf(t.startedAt), dateOf(t.finishedAt), now);
}

/** One Testrun, its tests and the selected test's live log. */
export function TestrunDetailPage(props: TestrunDetailPageProps) {
  const { state, now, selectedTest: sel } = props;
  const [confirm, setConfirm] = useState<'cancel' | 'delete'>();
  const [rerunBusy, setRerunBusy] = useState(false);
  const [rerunError, setRerunError] = useState<string>();

  if (state.notFound) {
    return <NotFoundPage title="Testrun not found" message={`There is no Testrun #${props.id}.`} />;
  }
  const run = state.testrun;
  if (run === undefined) {
    return (
      <Stack spacing={2} sx={{ alignItems: 'center', mt: 6 }}>
        {state.error !== undefined ? <Alert severity="warning">{state.error}</Alert> : <CircularProgress />}
        <ConnectionChip connection={state.connection} error={state.error} />
      </Stack>
    );
  }

  const hideXs = { display: { xs: 'none', sm: 'table-cell' } } as const;
  const rerun = async (onlyFailed: boolean) => {
    if (props.onRerun === undefined) return;
    setRerunBusy(true);
    setRerunError(undefined);
    try {
      await props.onRerun(onlyFailed);
    } catch (err) {
      setRerunError(describeError(err));
    } finally {
      setRerunBusy(false);
    }
  };
  const failedCount = notPassedCount(run.counts);
  const hasExpected = run.tests.some((t) => t.expectedDuration !== undefined);
  return (
    <Stack spacing={2}>
      {state.connection === 'reconnecting' && (
        <Alert severity="warning" data-testid="reconnecting">
          Connection to the coordinator lost; reconnecting… Updates resume where they stopped.
        </Alert>
      )}

      <Paper sx={{ p: { xs: 2, sm: 3 } }}>
        <Stack direction="row" spacing={1} sx={{ alignItems: 'center', flexWrap: 'wrap', rowGap: 1, mb: 2 }}>
          <Typography variant="h5" component="h1" sx={{ mr: 1 }}>
            Testrun #{String(run.id)}
          </Typography>
          <TestrunStatusChip status={run.status} />
          <ConnectionChip connection={state.connection} error={state.error} />
          {run.rerunOf !== undefined && (
            <Link component={RouterLink} to={`/testruns/${run.rerunOf}`} data-testid="rerun-of" variant="body2">
              rerun of #{String(run.rerunOf)}
            </Link>
          )}
          <Box sx={{ flexGrow: 1 }} />
          {props.onRerun !== undefined && isTerminal(run.status) && (
            <>
              <Tooltip title={failedCount === 0 ? 'Every test passed' : `A new Testrun with the ${failedCount} tests that did not pass`}>
                <span>
                  <Button
                    variant="outlined"
                    startIcon={<ReplayIcon />}
                    disabled={failedCount === 0 || rerunBusy}
                    onClick={() => void rerun(true)}
                    data-testid="rerun-failed"
                  >
                    Rerun failed
                  </Button>
                </span>
              </Tooltip>
              <Button
                variant="outlined"
                startIcon={<ReplayIcon />}
                disabled={rerunBusy}
                onClick={() => void rerun(false)}
                data-testid="rerun-all"
              >
                Rerun all
              </Button>
            </>
          )}
          {canCancel(run) && (
            <Button color="warning" variant="outlined" startIcon={<CancelIcon />} onClick={() => setConfirm('cancel')}>
              Cancel
            </Button>
          )}
          <Button color="error" variant="outlined" startIcon={<DeleteIcon />} onClick={() => setConfirm('delete')}>
            Delete
          </Button>
        </Stack>
        {rerunError !== undefined && (
          <Alert severity="error" onClose={() => setRerunError(undefined)} sx={{ mb: 2 }} data-testid="rerun-error">
            {rerunError}
          </Alert>
        )}
        {run.waiting !== '' && (
          <Alert severity="info" sx={{ mb: 2 }} data-testid="waiting">
            {run.waiting}
          </Alert>
        )}
        <Box
          sx={{
            display: 'grid',
            gap: 2,
            gridTemplateColumns: { xs: 'repeat(2, minmax(0, 1fr))', sm: 'repeat(3, minmax(0, 1fr))', md: 'repeat(6, minmax(0, 1fr))' },
          }}
        >
          <Meta label="User">{run.username}</Meta>
          <Meta label="Tests (P / F / R / Q)">
            <TestCounts counts={run.counts} />
          </Meta>
          <Meta label="Created">{formatTime(dateOf(run.createdAt))}</Meta>
          <Meta label="Duration">
            {formatDuration(spanMs(dateOf(run.startedAt), dateOf(run.finishedAt), now)) || '—'}
          </Meta>
          <Meta label="Timeout per test">{run.timeoutSeconds > 0 ? formatDuration(run.timeoutSeconds * 1000) : '—'}</Meta>
          <Meta label="Command">
            {run.command !== undefined ? <code>{run.command}</code> : <span>by shebang / extension</span>}
          </Meta>
          <Meta label="Suite">
            {run.suite !== '' ? (
              <Link component={RouterLink} to={`/suites/${encodeURIComponent(run.suite)}`} data-testid="suite-link">
                {run.suite}
              </Link>
            ) : (
              '—'
            )}
          </Meta>
          <Meta label="Retries">
            <span data-testid="retries">{run.retries}</span>
          </Meta>
          <Meta label="Runner selector">
            <LabelChips labels={run.selector} testId="selector" empty="any runner" />
          </Meta>
        </Box>
        <WorkspaceSummary run={run} />
      </Paper>

      <SetupTable setups={run.setups} now={now} />

      <Paper sx={{ overflow: 'hidden' }}>
        <TableContainer sx={{ maxHeight: 360 }}>
          <Table size="small" stickyHeader aria-label="Tests">
            <TableHead>
              <TableRow>
                <TableCell>Status</TableCell>
                <TableCell>Test</TableCell>
                <TableCell align="right">Exit</TableCell>
                <TableCell align="right">Duration</TableCell>
                {hasExpected && (
                  <TableCell align="right" sx={hideXs}>
                    Expected
                  </TableCell>
                )}
                <TableCell align="right" sx={hideXs}>
                  Attempt
                </TableCell>
                <TableCell sx={hideXs}>Runner</TableCell>
                <TableCell align="right" sx={hideXs}>
                  Lines
                </TableCell>
                <TableCell align="right">Cases</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {run.tests.map((t) => (
                <TableRow
                  key={String(t.id)}
                  hover
                  selected={sel?.id === t.id}
                  onClick={() => props.onSelectTest(t)}
                  data-testid="test-row"
                  data-name={t.name}
                  data-status={Test_Status[t.status]}
                  aria-selected={sel?.id === t.id}
                  sx={{ cursor: 'pointer' }}
                >
                  <TableCell>
                    <TestStatusChip status={t.status} />
                  </TableCell>
                  <TableCell sx={{ fontFamily: 'monospace', overflowWrap: 'anywhere' }}>
                    {t.name}
                    {t.error !== '' && (
                      <Typography variant="caption" color="error" component="div">
                        {t.error}
                      </Typography>
                    )}
                  </TableCell>
                  <TableCell align="right">{t.exitCode ?? ''}</TableCell>
                  <TableCell align="right" sx={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
                    {formatDuration(testDuration(t, now))}
                  </TableCell>
                  {hasExpected && (
                    <TableCell
                      align="right"
                      sx={{ ...hideXs, whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums', color: 'text.secondary' }}
                      data-testid="expected"
                    >
                      {t.expectedDuration !== undefined ? `~${formatDuration(durationMs(t.expectedDuration))}` : ''}
                    </TableCell>
                  )}
                  <TableCell align="right" sx={hideXs}>
                    {t.attempts.length > 1 ? `${t.attempts.length}` : t.attempt > 0 ? t.attempt : ''}
                  </TableCell>
                  <TableCell sx={hideXs}>{t.runner}</TableCell>
                  <TableCell align="right" sx={{ ...hideXs, fontVariantNumeric: 'tabular-nums' }}>
                    {formatCount(Math.max(Number(t.logLines), props.liveLines?.(t) ?? 0))}
                  </TableCell>
                  <TableCell align="right">
                    <CaseCounts counts={t.cases} />
                    {t.note !== '' && (
                      <Tooltip title={t.note}>
                        <Typography variant="caption" color="warning.main" component="span" sx={{ ml: 0.5 }} data-testid="note-mark">
                          ⚠
                        </Typography>
                      </Tooltip>
                    )}
                  </TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        </TableContainer>
      </Paper>

      {sel !== undefined && sel.attempts.length > 1 && props.attempt !== undefined && (
        <Paper sx={{ p: { xs: 1, sm: 2 } }}>
          <AttemptsPanel
            attempts={sel.attempts}
            selected={props.attempt.selected}
            onSelect={props.attempt.onSelect}
            now={now}
          />
        </Paper>
      )}

      {sel !== undefined && props.cases !== undefined && (
        <Paper sx={{ p: { xs: 1, sm: 2 } }}>
          <CasesPanel {...props.cases} />
        </Paper>
      )}

      {sel !== undefined && props.log !== undefined && (
        <Paper sx={{ p: { xs: 1, sm: 2 } }} data-testid="log-panel" data-test={sel.name}>
          <Stack
            direction="row"
            spacing={1}
            useFlexGap
            sx={{ alignItems: 'center', flexWrap: 'wrap', rowGap: 1, mb: 1 }}
          >
            <Stack direction="row" spacing={1} sx={{ alignItems: 'center', flexGrow: 1, minWidth: 0 }}>
              <Typography variant="subtitle1" component="h2" noWrap sx={{ fontFamily: 'monospace' }}>
                {sel.name}
              </Typography>
              <TestStatusChip status={sel.status} />
              {props.attempt?.selected !== undefined && (
                <Typography variant="caption" noWrap data-testid="log-attempt">
                  attempt {props.attempt.selected}
                </Typography>
              )}
              <Typography variant="caption" color="text.secondary" noWrap>
                {formatCount(props.log.total)} lines
              </Typography>
            </Stack>
            <Stack direction="row" spacing={0.5} sx={{ alignItems: 'center', flexGrow: { xs: 1, md: 0 } }}>
              <TextField
                size="small"
                placeholder="Search log"
                value={props.search.query}
                onChange={(e) => props.search.onQueryChange(e.target.value)}
                onKeyDown={(e) => {
                  if (e.key === 'Enter') {
                    e.preventDefault();
                    props.search.onFind(e.shiftKey ? -1 : 1);
                  }
                }}
                slotProps={{
                  htmlInput: { 'aria-label': 'Search log', 'data-testid': 'log-search' },
                  input: {
                    startAdornment: (
                      <InputAdornment position="start">
                        <SearchIcon fontSize="small" />
                      </InputAdornment>
                    ),
                    endAdornment:
                      props.search.status !== undefined ? (
                        <InputAdornment position="end">
                          <Typography variant="caption" color="text.secondary" noWrap data-testid="search-status">
                            {props.search.status}
                          </Typography>
                        </InputAdornment>
                      ) : undefined,
                  },
                }}
                sx={{ flexGrow: 1, minWidth: { xs: 120, md: 280 } }}
              />
              <Tooltip title="Previous match (Shift+Enter)">
                <span>
                  <IconButton
                    aria-label="Previous match"
                    disabled={props.search.query === ''}
                    onClick={() => props.search.onFind(-1)}
                  >
                    <KeyboardArrowUpIcon />
                  </IconButton>
                </span>
              </Tooltip>
              <Tooltip title="Next match (Enter)">
                <span>
                  <IconButton
                    aria-label="Next match"
                    disabled={props.search.query === ''}
                    onClick={() => props.search.onFind(1)}
                  >
                    <KeyboardArrowDownIcon />
                  </IconButton>
                </span>
              </Tooltip>
              <Tooltip title={props.follow ? 'Following the end of the log' : 'Jump to the end and follow it'}>
                <Button
                  variant={props.follow ? 'contained' : 'outlined'}
                  size="small"
                  onClick={() => props.onFollowChange(!props.follow)}
                  aria-pressed={props.follow}
                  aria-label={props.follow ? 'Following' : 'Follow'}
                  data-testid="follow"
                  sx={{ whiteSpace: 'nowrap', minWidth: 0, px: { xs: 1, sm: 1.5 } }}
                >
                  <VerticalAlignBottomIcon fontSize="small" />
                  <Box component="span" sx={{ display: { xs: 'none', sm: 'inline' }, ml: 0.5 }}>
                    {props.follow ? 'Following' : 'Follow'}
                  </Box>
                </Button>
              </Tooltip>
              <Tooltip title="Download the whole log as text">
                <IconButton
                  component="a"
                  href={props.logUrl(sel.name)}
                  download={`${sel.name}.log`}
                  aria-label="Download log"
                  data-testid="download-log"
                >
                  <DownloadIcon />
                </IconButton>
              </Tooltip>
            </Stack>
          </Stack>
          <LogViewer
            key={`${sel.id}/${props.attempt?.selected ?? 'all'}`}
            total={props.log.total}
            getLine={props.log.getLine}
            ensureRange={props.log.ensureRange}
            version={props.log.version}
            follow={props.follow}
            onFollowChange={props.onFollowChange}
            highlight={props.search.query}
            focus={props.search.focus}
          />
        </Paper>
      )}

      <ConfirmDialog
        open={confirm === 'cancel'}
        title={`Cancel Testrun #${run.id}?`}
        confirmLabel="Cancel Testrun"
        onConfirm={props.onCancel}
        onClose={() => setConfirm(undefined)}
      >
        Queued tests end at once; running tests are stopped by their runners. This cannot be undone.
      </ConfirmDialog>
      <ConfirmDialog
        open={confirm === 'delete'}
        title={`Delete Testrun #${run.id}?`}
        confirmLabel="Delete"
        onConfirm={props.onDelete}
        onClose={() => setConfirm(undefined)}
      >
        The Testrun, its tests and their logs are removed for good{canCancel(run) ? '; it is cancelled first' : ''}.
      </ConfirmDialog>
    </Stack>
  );
}
