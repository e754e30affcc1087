import LinearProgress from '@mui/material/LinearProgress';
import Stack from '@mui/material/Stack';
import Typography from '@mui/material/Typography';
import { formatBytes, formatCount } from '../lib/format';
import type { WorkspaceProgress } from '../store/TestrunStore';

function percent(done: number, total: number): number {
  return total <= 0 ? 100 : Math.min(100, (100 * done) / total);
}

/** What a workspace submission is doing: hashing, checking, uploading, creating. */
export function WorkspaceProgressView({ progress: p }: { progress: WorkspaceProgress }) {
  const h = p.hash;
  const u = p.upload;
  let value: number | undefined;
  let line: string;
  switch (p.phase) {
    case 'hashing':
      value = h === undefined ? undefined : percent(h.bytesHashed, h.bytesTotal);
      line =
        h === undefined
          ? 'Hashing…'
          : `Hashing: ${formatCount(h.filesHashed)} of ${formatCount(h.filesTotal)} files, ` +
            `${formatBytes(h.bytesHashed)} of ${formatBytes(h.bytesTotal)}`;
      break;
    case 'checking':
      value = undefined;
      line = 'Asking the coordinator what it already has…';
      break;
    case 'uploading':
      value = u === undefined ? undefined : percent(u.bytesSent, u.bytesToSend);
      line =
        u === undefined
          ? 'Uploading…'
          : `Uploading: ${formatBytes(u.bytesSent)} of ${formatBytes(u.bytesToSend)} ` +
            `(${formatCount(u.blobsSent)} of ${formatCount(u.blobsToSend)} blobs)`;
      break;
    case 'creating':
      value = undefined;
      line = 'Creating the Testrun…';
      break;
  }
  return (
    <Stack spacing={0.5} data-testid="upload-progress" data-phase={p.phase}>
      <LinearProgress variant={value === undefined ? 'indeterminate' : 'determinate'} value={value ?? 0} />
      <Typography variant="body2">{line}</Typography>
      {u !== undefined && (
        <Typography variant="caption" color="text.secondary" data-testid="upload-summary">
          {formatCount(u.filesPresent)} files ({formatBytes(u.bytesPresent)}) already on the coordinator;{' '}
          {formatCount(u.blobsToSend)} blobs ({formatBytes(u.bytesToSend)}) to send
        </Typography>
      )}
    </Stack>
  );
}
