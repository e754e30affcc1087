import Chip from '@mui/material/Chip';
import Stack from '@mui/material/Stack';

/** `gpu=a100` chips of a label map (a selector or a runner's labels), sorted by key. */
export function LabelChips(props: { labels: Record<string, string>; testId?: string; empty?: string }) {
  const entries = Object.entries(props.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return <span>{props.empty ?? '—'}</span>;
  return (
    <Stack direction="row" spacing={0.5} useFlexGap sx={{ flexWrap: 'wrap' }} data-testid={props.testId}>
      {entries.map(([k, v]) => (
        <Chip key={k} size="small" variant="outlined" label={`${k}=${v}`} sx={{ fontFamily: 'monospace' }} />
      ))}
    </Stack>
  );
}
