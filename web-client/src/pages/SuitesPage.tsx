import Alert from '@mui/material/Alert';
import Button from '@mui/material/Button';
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
import { Link as RouterLink } from 'react-router';
import type { SuiteSummary } from '../gen/testrunner/v1/testrun_pb';
import { dateOf, formatTime } from '../lib/format';

export interface SuitesPageProps {
  /** Undefined until the first page arrives. */
  suites?: SuiteSummary[] | undefined;
  error?: string | undefined;
  loading: boolean;
  hasMore: boolean;
  onMore: () => void;
}

/** The path of a suite's page. */
export function suitePath(name: string): string {
  return `/suites/${encodeURIComponent(name)}`;
}

/** Suites with recorded history, most recently run first. */
export function SuitesPage(props: SuitesPageProps) {
  return (
    <Stack spacing={2}>
      <Typography variant="h5" component="h1">
        Suites
      </Typography>
      {props.error !== undefined && <Alert severity="error">{props.error}</Alert>}
      <Paper sx={{ overflow: 'hidden' }}>
        <TableContainer>
          <Table size="small" aria-label="Suites">
            <TableHead>
              <TableRow>
                <TableCell>Suite</TableCell>
                <TableCell align="right">Tests</TableCell>
                <TableCell align="right">Flaky tests</TableCell>
                <TableCell align="right">Testruns</TableCell>
                <TableCell>Last run</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {(props.suites ?? []).map((s) => (
                <TableRow key={s.name} hover data-testid="suite-row" data-name={s.name}>
                  <TableCell>
                    <Link component={RouterLink} to={suitePath(s.name)}>
                      {s.name}
                    </Link>
                  </TableCell>
                  <TableCell align="right">{s.tests}</TableCell>
                  <TableCell align="right" sx={{ color: s.flakyTests > 0 ? 'secondary.dark' : undefined }}>
                    {s.flakyTests}
                  </TableCell>
                  <TableCell align="right">{s.testruns}</TableCell>
                  <TableCell sx={{ whiteSpace: 'nowrap' }}>{formatTime(dateOf(s.lastRunAt))}</TableCell>
                </TableRow>
              ))}
              {props.suites !== undefined && props.suites.length === 0 && (
                <TableRow>
                  <TableCell colSpan={5} align="center" sx={{ py: 6, color: 'text.secondary' }}>
                    No suite has history yet: it is recorded as Testruns finish.
                  </TableCell>
                </TableRow>
              )}
            </TableBody>
          </Table>
        </TableContainer>
      </Paper>
      {props.hasMore && (
        <Button onClick={props.onMore} disabled={props.loading} sx={{ alignSelf: 'center' }}>
          More suites
        </Button>
      )}
    </Stack>
  );
}
