import AddIcon from '@mui/icons-material/Add';
import Alert from '@mui/material/Alert';
import Box from '@mui/material/Box';
import Button from '@mui/material/Button';
import LinearProgress from '@mui/material/LinearProgress';
import MenuItem from '@mui/material/MenuItem';
import Paper from '@mui/material/Paper';
import Stack from '@mui/material/Stack';
import Table from '@mui/material/Table';
import TableBody from '@mui/material/TableBody';
import TableCell from '@mui/material/TableCell';
import TableContainer from '@mui/material/TableContainer';
import TableHead from '@mui/material/TableHead';
import TablePagination from '@mui/material/TablePagination';
import TableRow from '@mui/material/TableRow';
import TextField from '@mui/material/TextField';
import Typography from '@mui/material/Typography';
import { Link as RouterLink, useNavigate } from 'react-router';
import { ConnectionChip } from '../components/ConnectionChip';
import { TestrunStatusChip } from '../components/StatusChip';
import { CaseCounts } from '../components/CaseCounts';
import { TestCounts } from '../components/TestCounts';
import type { Testrun_Status } from '../gen/testrunner/v1/testrun_pb';
import { dateOf, formatDuration, formatTime, spanMs } from '../lib/format';
import { TESTRUN_STATUSES, testrunStatusName } from '../lib/status';
import type { ListState } from '../store/TestrunStore';

export const PAGE_SIZES = [25, 50, 100];

export interface TestrunListPageProps {
  state: ListState;
  /** The username filter as typed (applied by the caller, debounced). */
  usernameInput: string;
  now: number;
  onStatusChange: (status: Testrun_Status | undefined) => void;
  onUsernameChange: (username: string) => void;
  onNextPage: () => void;
  onPrevPage: () => void;
  onPageSizeChange: (size: number) => void;
}

/** The Testrun list: newest first, filterable, paged, live. */
export function TestrunListPage(props: TestrunListPageProps) {
  const { state, now } = props;
  const navigate = useNavigate();
  const hide = { display: { xs: 'none', md: 'table-cell' } } as const;
  return (
    <Stack spacing={2}>
      <Stack direction="row" spacing={1} sx={{ alignItems: 'center', flexWrap: 'wrap', rowGap: 1 }}>
        <Typography variant="h5" component="h1" sx={{ flexGrow: 1 }}>
          Testruns
        </Typography>
        <ConnectionChip connection={state.connection} />
        <Button component={RouterLink} to="/new" variant="contained" startIcon={<AddIcon />}>
          New Testrun
        </Button>
      </Stack>

      <Stack direction={{ xs: 'column', sm: 'row' }} spacing={2}>
        <TextField
          select
          size="small"
          label="Status"
          value={state.filter.status === undefined ? '' : testrunStatusName(state.filter.status)}
          onChange={(e) => {
            const name = e.target.value;
            props.onStatusChange(TESTRUN_STATUSES.find((s) => testrunStatusName(s) === name));
          }}
          sx={{ minWidth: 160 }}
          slotProps={{ htmlInput: { 'data-testid': 'status-filter' } }}
        >
          <MenuItem value="">All</MenuItem>
          {TESTRUN_STATUSES.map((s) => (
            <MenuItem key={s} value={testrunStatusName(s)}>
              {testrunStatusName(s)}
            </MenuItem>
          ))}
        </TextField>
        <TextField
          size="small"
          label="Username"
          placeholder="exact match"
          value={props.usernameInput}
          onChange={(e) => props.onUsernameChange(e.target.value)}
          sx={{ minWidth: 200 }}
        />
      </Stack>

      {state.error !== undefined && <Alert severity="error">{state.error}</Alert>}

      <Paper sx={{ overflow: 'hidden' }}>
        <Box sx={{ height: 4 }}>{state.loading && <LinearProgress />}</Box>
        <TableContainer>
          <Table size="small" aria-label="Testruns" sx={{ '& td, & th': { px: { xs: 1, sm: 2 } } }}>
            <TableHead>
              <TableRow>
                <TableCell>ID</TableCell>
                <TableCell>Status</TableCell>
                <TableCell>User</TableCell>
                <TableCell sx={{ whiteSpace: 'nowrap' }}>
                  <Box component="span" title="passed / failed / running / queued">
                    Tests{' '}
                    <Box component="span" sx={{ display: { xs: 'none', sm: 'inline' } }}>
                      P / F / R / Q
                    </Box>
                  </Box>
                </TableCell>
                <TableCell sx={hide}>Created</TableCell>
                <TableCell align="right">Duration</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {state.testruns.map((t) => {
                const href = `/testruns/${t.id}`;
                return (
                  <TableRow
                    key={String(t.id)}
                    hover
                    data-testid="testrun-row"
                    data-id={String(t.id)}
                    onClick={(e) => {
                      // Let links and modifier-clicks behave as links.
                      if ((e.target as HTMLElement).closest('a') !== null || e.metaKey || e.ctrlKey) return;
                      void navigate(href);
                    }}
                    sx={{ cursor: 'pointer' }}
                  >
                    <TableCell>
                      <RouterLink to={href}>#{String(t.id)}</RouterLink>
                    </TableCell>
                    <TableCell>
                      <TestrunStatusChip status={t.status} />
                    </TableCell>
                    <TableCell sx={{ maxWidth: 180, overflow: 'hidden', textOverflow: 'ellipsis' }}>{t.username}</TableCell>
                    <TableCell>
                      <TestCounts counts={t.counts} />
                      {t.cases !== undefined && t.cases.total > 0 && (
                        <Box component="span" sx={{ ml: 1.5, fontSize: '0.85em' }}>
                          <CaseCounts counts={t.cases} />
                        </Box>
                      )}
                    </TableCell>
                    <TableCell sx={{ ...hide, whiteSpace: 'nowrap' }}>{formatTime(dateOf(t.createdAt))}</TableCell>
                    <TableCell align="right" sx={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
                      {formatDuration(spanMs(dateOf(t.startedAt), dateOf(t.finishedAt), now))}
                    </TableCell>
                  </TableRow>
                );
              })}
              {!state.loading && state.testruns.length === 0 && state.error === undefined && (
                <TableRow>
                  <TableCell colSpan={6} align="center" sx={{ py: 6, color: 'text.secondary' }}>
                    No Testruns{state.filter.status !== undefined || state.filter.username !== undefined ? ' match these filters' : ' yet'}.
                  </TableCell>
                </TableRow>
              )}
            </TableBody>
          </Table>
        </TableContainer>
        <TablePagination
          component="div"
          count={state.totalSize}
          page={state.page}
          rowsPerPage={state.pageSize}
          rowsPerPageOptions={PAGE_SIZES}
          onPageChange={(_, p) => (p > state.page ? props.onNextPage() : props.onPrevPage())}
          onRowsPerPageChange={(e) => props.onPageSizeChange(Number(e.target.value))}
          slotProps={{
            actions: {
              nextButton: { disabled: !state.hasNext || state.loading },
              previousButton: { disabled: state.page === 0 || state.loading },
            },
          }}
        />
      </Paper>
    </Stack>
  );
}
