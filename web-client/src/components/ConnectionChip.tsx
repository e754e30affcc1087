import Chip from '@mui/material/Chip';
import Tooltip from '@mui/material/Tooltip';
import type { Connection } from '../store/TestrunStore';

const LABELS: Record<Connection, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  ended: 'Finished',
};

/**
 * Whether the page is receiving live updates. Nothing is shown once the
 * stream has ended: the status chip beside it already says it is final.
 */
export function ConnectionChip(props: { connection: Connection; error?: string | undefined }) {
  const { connection } = props;
  if (connection === 'ended') return null;
  const chip = (
    <Chip
      size="small"
      variant={connection === 'live' ? 'filled' : 'outlined'}
      color={connection === 'live' ? 'success' : connection === 'reconnecting' ? 'warning' : 'default'}
      label={LABELS[connection]}
      data-testid="connection"
      data-connection={connection}
      role="status"
    />
  );
  return props.error !== undefined && connection === 'reconnecting' ? (
    <Tooltip title={props.error}>{chip}</Tooltip>
  ) : (
    chip
  );
}
