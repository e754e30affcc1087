// The detail page's workspace part: the tree (files, size, digest), the
// set-up command and env, and each runner's set-up with its log.

import ContentCopyIcon from '@mui/icons-material/ContentCopy';
import KeyboardArrowDownIcon from '@mui/icons-material/KeyboardArrowDown';
import KeyboardArrowRightIcon from '@mui/icons-material/KeyboardArrowRight';
import Box from '@mui/material/Box';
import Chip from '@mui/material/Chip';
import Collapse from '@mui/material/Collapse';
import IconButton from '@mui/material/IconButton';
import Paper from '@mui/material/Paper';
import Stack from '@mui/material/Stack';
import Table from '@mui/material/Table';
import TableBody from '@mui/material/TableBody';
import TableCell from '@mui/material/TableCell';
import TableHead from '@mui/material/TableHead';
import TableRow from '@mui/material/TableRow';
import Tooltip from '@mui/material/Tooltip';
import Typography from '@mui/material/Typography';
import { Fragment, useCallback, useMemo, useState } from 'react';
import { Setup_Status, type Setup, type Testrun } from '../gen/testrunner/v1/testrun_pb';
import { dateOf, durationMs, formatBytes, formatCount, formatDuration, spanMs } from '../lib/format';
import { LogViewer } from './LogViewer';

const SETUP_STATUS: Record<Setup_Status, { name: string; color: 'default' | 'info' | 'success' | 'error' }> = {
  [Setup_Status.STATUS_UNSPECIFIED]: { name: 'UNKNOWN', color: 'default' },
  [Setup_Status.RUNNING]: { name: 'RUNNING', color: 'info' },
  [Setup_Status.PASSED]: { name: 'PASSED', color: 'success' },
  [Setup_Status.FAILED]: { name: 'FAILED', color: 'error' },
};

export function SetupStatusChip(props: { status: Setup_Status }) {
  const s = SETUP_STATUS[props.status] ?? SETUP_STATUS[Setup_Status.STATUS_UNSPECIFIED];
  return (
    <Chip
      size="small"
      variant="outlined"
      label={s.name}
      color={s.color}
      data-status={s.name}
      sx={{ fontWeight: 600, minWidth: 76 }}
    />
  );
}

function setupDuration(s: Setup, now: number): number | undefined {
  if (s.duration !== undefined && s.status !== Setup_Status.RUNNING) return durationMs(s.duration);
  return spanMs(dateOf(s.startedAt), dateOf(s.finishedAt), now);
}

/** A set-up's output in the log viewer (ANSI colours, virtualised). */
function SetupLog({ output }: { output: string }) {
  const lines = useMemo(() => {
    const l = output.split('\n');
    // A trailing newline ends the last line; it does not start a new one.
    if (l.length > 1 && l[l.length - 1] === '') l.pop();
    return l;
  }, [output]);
  const [follow, setFollow] = useState(true);
  const getLine = useCallback((i: number) => lines[i], [lines]);
  const ensureRange = useCallback(() => {}, []);
  if (output === '') {
    return (
      <Typography variant="body2" color="text.secondary" sx={{ p: 1 }}>
        No output.
      </Typography>
    );
  }
  return (
    <LogViewer
      total={lines.length}
      getLine={getLine}
      ensureRange={ensureRange}
      version={lines.length}
      follow={follow}
      onFollowChange={setFollow}
      maxHeight="320px"
    />
  );
}

/** The workspace summary for the Testrun header. */
export function WorkspaceSummary({ run }: { run: Testrun }) {
  const ws = run.workspace;
  const [copied, setCopied] = useState(false);
  if (ws === undefined) return null;
  const digest = ws.digest === undefined ? '' : `${ws.digest.hash}/${ws.digest.sizeBytes}`;
  const env = Object.entries(run.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return (
    <Box data-testid="workspace" sx={{ mt: 2, pt: 2, borderTop: 1, borderColor: 'divider' }}>
      <Stack direction="row" spacing={1} useFlexGap sx={{ alignItems: 'baseline', flexWrap: 'wrap' }}>
        <Typography variant="subtitle2" component="h2">
          Workspace
        </Typography>
        <Typography variant="body2" data-testid="workspace-size">
          {formatCount(ws.files)} files, {formatBytes(ws.bytes)}
        </Typography>
        <Tooltip title={copied ? 'Copied' : `Digest ${digest} (click to copy)`}>
          <Box
            component="code"
            data-testid="workspace-digest"
            data-digest={digest}
            onClick={() => {
              void navigator.clipboard?.writeText(digest).then(() => setCopied(true));
            }}
            sx={{ cursor: 'pointer', fontSize: 13, overflowWrap: 'anywhere' }}
          >
            {ws.digest?.hash.slice(0, 16)}…/{String(ws.digest?.sizeBytes ?? 0n)}
            <ContentCopyIcon sx={{ fontSize: 14, ml: 0.5, verticalAlign: 'middle' }} />
          </Box>
        </Tooltip>
      </Stack>
      <Box sx={{ display: 'grid', gap: 2, mt: 1, gridTemplateColumns: { xs: '1fr', md: '1fr 1fr' } }}>
        <div>
          <Typography variant="caption" color="text.secondary" component="div">
            Set-up
          </Typography>
          <Typography variant="body2" component="div" data-testid="workspace-setup" sx={{ overflowWrap: 'anywhere' }}>
            {run.setup !== undefined && run.setup !== '' ? (
              <>
                <code>{run.setup}</code>
                {run.setupTimeoutSeconds > 0 && ` (timeout ${formatDuration(run.setupTimeoutSeconds * 1000)})`}
              </>
            ) : (
              '—'
            )}
          </Typography>
        </div>
        <div>
          <Typography variant="caption" color="text.secondary" component="div">
            Environment
          </Typography>
          <Typography variant="body2" component="div" data-testid="workspace-env" sx={{ overflowWrap: 'anywhere' }}>
            {env.length === 0
              ? '—'
              : env.map(([k, v]) => (
                  <div key={k}>
                    <code>
                      {k}={v}
                    </code>
                  </div>
                ))}
          </Typography>
        </div>
      </Box>
    </Box>
  );
}

/** Each runner's set-up: status, duration, exit code, error, and its output on demand. */
export function SetupTable({ setups, now }: { setups: readonly Setup[]; now: number }) {
  const [open, setOpen] = useState<Record<string, boolean>>({});
  if (setups.length === 0) return null;
  return (
    <Paper sx={{ overflow: 'hidden' }} data-testid="setups">
      <Typography variant="subtitle1" component="h2" sx={{ px: 2, pt: 1.5 }}>
        Set-up per runner
      </Typography>
      <Table size="small" aria-label="Set-up per runner">
        <TableHead>
          <TableRow>
            <TableCell padding="checkbox" />
            <TableCell>Status</TableCell>
            <TableCell>Runner</TableCell>
            <TableCell align="right">Exit</TableCell>
            <TableCell align="right">Duration</TableCell>
            <TableCell>Error</TableCell>
          </TableRow>
        </TableHead>
        <TableBody>
          {setups.map((s) => {
            const isOpen =
              open[s.runner] ?? (s.status === Setup_Status.FAILED || s.status === Setup_Status.RUNNING);
            return (
              <Fragment key={s.runner}>
                <TableRow
                  hover
                  data-testid="setup-row"
                  data-runner={s.runner}
                  data-status={SETUP_STATUS[s.status]?.name}
                  onClick={() => setOpen((o) => ({ ...o, [s.runner]: !isOpen }))}
                  sx={{ cursor: 'pointer', '& > td': { borderBottom: isOpen ? 'unset' : undefined } }}
                >
                  <TableCell padding="checkbox">
                    <IconButton size="small" aria-label={isOpen ? `Hide set-up log of ${s.runner}` : `Show set-up log of ${s.runner}`}>
                      {isOpen ? <KeyboardArrowDownIcon /> : <KeyboardArrowRightIcon />}
                    </IconButton>
                  </TableCell>
                  <TableCell>
                    <SetupStatusChip status={s.status} />
                  </TableCell>
                  <TableCell sx={{ fontFamily: 'monospace' }}>
                    {s.runner}
                    {s.reused && (
                      <Typography variant="caption" color="text.secondary" component="span" sx={{ ml: 1 }}>
                        reused
                      </Typography>
                    )}
                  </TableCell>
                  <TableCell align="right">{s.exitCode ?? ''}</TableCell>
                  <TableCell align="right" sx={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
                    {formatDuration(setupDuration(s, now))}
                  </TableCell>
                  <TableCell sx={{ color: 'error.main', overflowWrap: 'anywhere' }}>{s.error}</TableCell>
                </TableRow>
                <TableRow>
                  <TableCell colSpan={6} sx={{ py: 0, ...(isOpen ? {} : { borderBottom: 'none' }) }}>
                    <Collapse in={isOpen} timeout="auto" unmountOnExit>
                      <Box sx={{ py: 1 }} data-testid="setup-log" data-runner={s.runner}>
                        <SetupLog output={s.output} />
                      </Box>
                    </Collapse>
                  </TableCell>
                </TableRow>
              </Fragment>
            );
          })}
        </TableBody>
      </Table>
    </Paper>
  );
}
