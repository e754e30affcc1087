import ContentCopyIcon from '@mui/icons-material/ContentCopy';
import Alert from '@mui/material/Alert';
import Box from '@mui/material/Box';
import Button from '@mui/material/Button';
import Chip from '@mui/material/Chip';
import IconButton from '@mui/material/IconButton';
import Link from '@mui/material/Link';
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
import { useState, type FormEvent } from 'react';
import { Link as RouterLink } from 'react-router';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { LabelChips } from '../components/Labels';
import type { RunnerInfo, RunnerToken } from '../gen/testrunner/v1/admin_pb';
import { describeError } from '../lib/errors';
import { dateOf, formatTime } from '../lib/format';

/** Runner token names, as the coordinator accepts them. */
export const TOKEN_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** The client-side check of a new token's name, worded as the coordinator words it; undefined when fine. */
export function tokenNameError(name: string): string | undefined {
  return TOKEN_NAME.test(name)
    ? undefined
    : `name: ${JSON.stringify(name)} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'`;
}

export interface RunnersPageProps {
  /** Undefined until the first answer. */
  runners?: RunnerInfo[] | undefined;
  /** Why the last refresh failed. */
  error?: string | undefined;
  tokens?: RunnerToken[] | undefined;
  tokensError?: string | undefined;
  onDrain: (runner: RunnerInfo) => Promise<void>;
  /** Resolves to the secret (shown once). */
  onCreateToken: (name: string) => Promise<string>;
  onRevokeToken: (name: string) => Promise<void>;
}

/** Attached runners (drain one) and the tokens runners attach with (create, revoke). */
export function RunnersPage(props: RunnersPageProps) {
  const [draining, setDraining] = useState<RunnerInfo>();
  const [revoking, setRevoking] = useState<string>();
  const [name, setName] = useState('');
  const [nameError, setNameError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState<{ name: string; secret: string }>();
  const [copied, setCopied] = useState(false);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const n = name.trim();
    const local = tokenNameError(n);
    if (local !== undefined) {
      setNameError(local);
      return;
    }
    setBusy(true);
    setNameError(undefined);
    try {
      const secret = await props.onCreateToken(n);
      setCreated({ name: n, secret });
      setCopied(false);
      setName('');
    } catch (err) {
      setNameError(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  const runners = props.runners;
  return (
    <Stack spacing={2}>
      <Stack direction="row" spacing={1} sx={{ alignItems: 'baseline' }}>
        <Typography variant="h5" component="h1">
          Runners
        </Typography>
        {runners !== undefined && (
          <Typography variant="body2" color="text.secondary" data-testid="runner-count">
            {runners.length} attached
          </Typography>
        )}
      </Stack>
      {props.error !== undefined && (
        <Alert severity="warning" data-testid="runners-error">
          {props.error}
        </Alert>
      )}
      <Paper sx={{ overflow: 'hidden' }}>
        <TableContainer>
          <Table size="small" aria-label="Runners">
            <TableHead>
              <TableRow>
                <TableCell>Name</TableCell>
                <TableCell>Labels</TableCell>
                <TableCell align="right">Slots</TableCell>
                <TableCell>Running</TableCell>
                <TableCell>Version</TableCell>
                <TableCell sx={{ display: { xs: 'none', md: 'table-cell' } }}>Attached</TableCell>
                <TableCell align="right">State</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {(runners ?? []).map((r) => (
                <TableRow key={r.id} data-testid="runner-row" data-name={r.name} data-draining={String(r.draining)}>
                  <TableCell sx={{ fontFamily: 'monospace' }}>
                    {r.name}
                    {r.tokenName !== '' && (
                      <Typography variant="caption" color="text.secondary" component="div">
                        token {r.tokenName}
                      </Typography>
                    )}
                  </TableCell>
                  <TableCell>
                    <LabelChips labels={r.labels} />
                  </TableCell>
                  <TableCell align="right" sx={{ fontVariantNumeric: 'tabular-nums' }}>
                    {r.running.length} / {r.slots}
                  </TableCell>
                  <TableCell>
                    {r.running.length === 0 ? (
                      <Typography variant="body2" color="text.secondary" component="span">
                        idle
                      </Typography>
                    ) : (
                      <Stack spacing={0.25}>
                        {r.running.map((t) => (
                          <Link
                            key={String(t.testId)}
                            component={RouterLink}
                            to={`/testruns/${t.testrunId}?test=${encodeURIComponent(t.name)}`}
                            sx={{ fontFamily: 'monospace', fontSize: '0.85em', overflowWrap: 'anywhere' }}
                          >
                            #{String(t.testrunId)} {t.name}
                          </Link>
                        ))}
                      </Stack>
                    )}
                  </TableCell>
                  <TableCell sx={{ fontFamily: 'monospace' }}>{r.version}</TableCell>
                  <TableCell sx={{ display: { xs: 'none', md: 'table-cell' }, whiteSpace: 'nowrap' }}>
                    {formatTime(dateOf(r.registeredAt))}
                  </TableCell>
                  <TableCell align="right">
                    {r.draining ? (
                      <Chip size="small" color="warning" label="draining" data-testid="draining" />
                    ) : (
                      <Button size="small" color="warning" variant="outlined" onClick={() => setDraining(r)}>
                        Drain
                      </Button>
                    )}
                  </TableCell>
                </TableRow>
              ))}
              {runners !== undefined && runners.length === 0 && (
                <TableRow>
                  <TableCell colSpan={7} align="center" sx={{ py: 4, color: 'text.secondary' }}>
                    No runner is attached.
                  </TableCell>
                </TableRow>
              )}
            </TableBody>
          </Table>
        </TableContainer>
      </Paper>

      <Typography variant="h6" component="h2" sx={{ pt: 2 }}>
        Runner tokens
      </Typography>
      <Typography variant="body2" color="text.secondary">
        A token per runner or pool, besides the shared one; revoking it ends its runners&apos; streams within a heartbeat.
      </Typography>
      {props.tokensError !== undefined && <Alert severity="warning">{props.tokensError}</Alert>}
      {created !== undefined && (
        <Alert severity="success" onClose={() => setCreated(undefined)} data-testid="token-secret">
          <Box>
            Token <b>{created.name}</b> created. Its secret is shown only now: give it to the runners (
            <code>--token-file</code>).
          </Box>
          <Stack direction="row" spacing={1} sx={{ alignItems: 'center', mt: 1 }}>
            <Box
              component="code"
              data-testid="token-secret-value"
              sx={{ bgcolor: 'background.paper', px: 1, py: 0.5, borderRadius: 1, overflowWrap: 'anywhere' }}
            >
              {created.secret}
            </Box>
            <Tooltip title={copied ? 'Copied' : 'Copy'}>
              <IconButton
                size="small"
                aria-label="Copy secret"
                onClick={() => {
                  void navigator.clipboard?.writeText(created.secret).then(() => setCopied(true), () => {});
                }}
              >
                <ContentCopyIcon fontSize="small" />
              </IconButton>
            </Tooltip>
          </Stack>
        </Alert>
      )}
      <Paper component="form" onSubmit={(e: FormEvent) => void create(e)} noValidate sx={{ p: 2 }}>
        <Stack direction="row" spacing={1} sx={{ alignItems: 'flex-start' }}>
          <TextField
            size="small"
            label="New token name"
            placeholder="pool-gpu"
            value={name}
            onChange={(e) => {
              setName(e.target.value);
              setNameError(undefined);
            }}
            error={nameError !== undefined}
            helperText={nameError ?? '1 to 64 characters of A-Z a-z 0-9 . _ -'}
            slotProps={{ htmlInput: { 'data-testid': 'token-name', spellCheck: false } }}
            sx={{ minWidth: 260 }}
          />
          <Button type="submit" variant="contained" disabled={busy} data-testid="create-token">
            Create token
          </Button>
        </Stack>
      </Paper>
      <Paper sx={{ overflow: 'hidden' }}>
        <Table size="small" aria-label="Runner tokens">
          <TableHead>
            <TableRow>
              <TableCell>Name</TableCell>
              <TableCell>Created</TableCell>
              <TableCell>Last used</TableCell>
              <TableCell align="right">State</TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {(props.tokens ?? []).map((t) => (
              <TableRow key={t.name} data-testid="token-row" data-name={t.name}>
                <TableCell sx={{ fontFamily: 'monospace' }}>{t.name}</TableCell>
                <TableCell sx={{ whiteSpace: 'nowrap' }}>{formatTime(dateOf(t.createdAt))}</TableCell>
                <TableCell sx={{ whiteSpace: 'nowrap' }}>{formatTime(dateOf(t.lastUsedAt)) || 'never'}</TableCell>
                <TableCell align="right">
                  {t.revokedAt !== undefined ? (
                    <Chip size="small" label={`revoked ${formatTime(dateOf(t.revokedAt))}`} data-testid="revoked" />
                  ) : (
                    <Button size="small" color="error" variant="outlined" onClick={() => setRevoking(t.name)}>
                      Revoke
                    </Button>
                  )}
                </TableCell>
              </TableRow>
            ))}
            {props.tokens !== undefined && props.tokens.length === 0 && (
              <TableRow>
                <TableCell colSpan={4} align="center" sx={{ py: 3, color: 'text.secondary' }}>
                  No runner tokens: runners attach with the shared token.
                </TableCell>
              </TableRow>
            )}
          </TableBody>
        </Table>
      </Paper>

      <ConfirmDialog
        open={draining !== undefined}
        title={`Drain runner ${draining?.name ?? ''}?`}
        confirmLabel="Drain"
        onConfirm={async () => {
          if (draining !== undefined) await props.onDrain(draining);
        }}
        onClose={() => setDraining(undefined)}
      >
        It gets no more tests; the tests it runs now finish. It stays attached until it goes.
      </ConfirmDialog>
      <ConfirmDialog
        open={revoking !== undefined}
        title={`Revoke token ${revoking ?? ''}?`}
        confirmLabel="Revoke"
        onConfirm={async () => {
          if (revoking !== undefined) await props.onRevokeToken(revoking);
        }}
        onClose={() => setRevoking(undefined)}
      >
        No runner can attach with it any more, and runners attached with it are disconnected within a heartbeat.
      </ConfirmDialog>
    </Stack>
  );
}
