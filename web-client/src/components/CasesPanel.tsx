import KeyboardArrowDownIcon from '@mui/icons-material/KeyboardArrowDown';
import KeyboardArrowRightIcon from '@mui/icons-material/KeyboardArrowRight';
import Alert from '@mui/material/Alert';
import Box from '@mui/material/Box';
import MenuItem from '@mui/material/MenuItem';
import Stack from '@mui/material/Stack';
import TextField from '@mui/material/TextField';
import Typography from '@mui/material/Typography';
import { memo, useCallback, useMemo, useRef, useState } from 'react';
import { TestCase_Status, type TestCase } from '../gen/testrunner/v1/testrun_pb';
import { DEFAULT_BG, DEFAULT_FG, parseAnsi } from '../lib/ansi';
import { durationMs, formatCount, formatDuration } from '../lib/format';

/** Height of a case's row, and of its opened message and details. */
export const CASE_ROW = 36;
export const CASE_DETAIL = 240;
/** Rows drawn beyond the visible ones. */
const OVERSCAN = 10;

const STATUS_COLOR: Record<TestCase_Status, string> = {
  [TestCase_Status.STATUS_UNSPECIFIED]: 'text.secondary',
  [TestCase_Status.PASSED]: 'success.main',
  [TestCase_Status.FAILED]: 'error.main',
  [TestCase_Status.ERROR]: 'error.main',
  [TestCase_Status.SKIPPED]: 'text.secondary',
};

export interface CasesPanelProps {
  cases: readonly TestCase[];
  /** Cases of the test, from its counts (the list may still be loading). */
  total: number;
  loading: boolean;
  error?: string | undefined;
  /** The test's note about its report, if any. */
  note: string;
  status: TestCase_Status | undefined;
  onStatusChange: (s: TestCase_Status | undefined) => void;
  name: string;
  onNameChange: (n: string) => void;
  /** Height of the scrolling list, in pixels. */
  height?: number;
}

/** Text with ANSI colours rendered. */
function Ansi(props: { text: string }) {
  const lines = props.text.split('\n');
  return (
    <>
      {lines.map((line, i) => (
        <div key={i}>
          {parseAnsi(line).map((s, j) => (
            <span
              key={j}
              style={{
                color: s.fg,
                backgroundColor: s.bg,
                fontWeight: s.bold === true ? 'bold' : undefined,
                opacity: s.dim === true ? 0.7 : undefined,
                fontStyle: s.italic === true ? 'italic' : undefined,
                textDecoration: s.underline === true ? 'underline' : undefined,
              }}
            >
              {s.text}
            </span>
          ))}
          {line === '' && '\u00a0'}
        </div>
      ))}
    </>
  );
}

const CaseRow = memo(function CaseRow(props: {
  c: TestCase;
  top: number;
  open: boolean;
  onToggle: (index: number) => void;
  index: number;
}) {
  const { c } = props;
  const failed = c.status === TestCase_Status.FAILED || c.status === TestCase_Status.ERROR;
  const headline = (c.message !== '' ? c.message : c.details).split('\n').find((l) => l.trim() !== '') ?? '';
  const hasText = c.message !== '' || c.details !== '' || c.systemOut !== '' || c.systemErr !== '';
  return (
    <Box
      data-testid="case-row"
      data-name={c.name}
      data-status={TestCase_Status[c.status]}
      data-open={props.open}
      sx={{ position: 'absolute', top: props.top, left: 0, right: 0 }}
    >
      <Stack
        direction="row"
        spacing={1}
        onClick={() => hasText && props.onToggle(props.index)}
        role={hasText ? 'button' : undefined}
        aria-expanded={hasText ? props.open : undefined}
        sx={{
          height: CASE_ROW,
          alignItems: 'center',
          px: 1,
          cursor: hasText ? 'pointer' : 'default',
          borderBottom: 1,
          borderColor: 'divider',
          '&:hover': { bgcolor: 'action.hover' },
        }}
      >
        <Box sx={{ width: 20, display: 'flex' }}>
          {hasText && (props.open ? <KeyboardArrowDownIcon fontSize="small" /> : <KeyboardArrowRightIcon fontSize="small" />)}
        </Box>
        <Typography variant="caption" sx={{ width: 64, color: STATUS_COLOR[c.status], fontWeight: 600 }}>
          {TestCase_Status[c.status]}
        </Typography>
        <Typography variant="body2" noWrap sx={{ fontFamily: 'monospace', minWidth: 0, flexShrink: 1 }} title={`${c.classname}::${c.name}`}>
          {c.classname !== '' && (
            <Box component="span" sx={{ color: 'text.secondary' }}>
              {c.classname}::
            </Box>
          )}
          {c.name}
        </Typography>
        {failed && headline !== '' && (
          <Typography variant="caption" color="error" noWrap sx={{ minWidth: 0, flex: 1 }}>
            {headline}
          </Typography>
        )}
        <Box sx={{ flexGrow: 1 }} />
        <Typography variant="caption" color="text.secondary" sx={{ whiteSpace: 'nowrap' }}>
          {c.duration !== undefined ? formatDuration(durationMs(c.duration)) : ''}
        </Typography>
      </Stack>
      {props.open && (
        <Box
          data-testid="case-detail"
          sx={{
            height: CASE_DETAIL,
            overflow: 'auto',
            bgcolor: DEFAULT_BG,
            color: DEFAULT_FG,
            fontFamily: 'monospace',
            fontSize: 12,
            whiteSpace: 'pre-wrap',
            overflowWrap: 'anywhere',
            p: 1,
          }}
        >
          {c.message !== '' && <Ansi text={c.message} />}
          {c.details !== '' && (
            <Box sx={{ mt: 1 }}>
              <Ansi text={c.details} />
            </Box>
          )}
          {c.systemOut !== '' && (
            <Box sx={{ mt: 1 }}>
              <div style={{ opacity: 0.6 }}>system-out</div>
              <Ansi text={c.systemOut} />
            </Box>
          )}
          {c.systemErr !== '' && (
            <Box sx={{ mt: 1 }}>
              <div style={{ opacity: 0.6 }}>system-err</div>
              <Ansi text={c.systemErr} />
            </Box>
          )}
        </Box>
      )}
    </Box>
  );
});

/** Row tops (and the total height) with the opened rows taller. */
export function rowOffsets(count: number, open: ReadonlySet<number>): Float64Array {
  const tops = new Float64Array(count + 1);
  for (let i = 0; i < count; i++) tops[i + 1] = tops[i]! + CASE_ROW + (open.has(i) ? CASE_DETAIL : 0);
  return tops;
}

/** The first row whose bottom is below `y`. */
export function rowAt(tops: Float64Array, y: number): number {
  let lo = 0;
  let hi = tops.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tops[mid + 1]! <= y) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The virtualised list of cases. */
function CaseListView(props: { cases: readonly TestCase[]; height: number }) {
  const { height } = props;
  const [open, setOpen] = useState<ReadonlySet<number>>(new Set());
  const [scrollTop, setScrollTop] = useState(0);
  const ref = useRef<HTMLDivElement>(null);
  const count = props.cases.length;
  const tops = useMemo(() => rowOffsets(count, open), [count, open]);
  const first = Math.max(0, rowAt(tops, scrollTop) - OVERSCAN);
  const last = Math.min(count, rowAt(tops, scrollTop + height) + 1 + OVERSCAN);
  const toggle = useCallback((i: number) => {
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(i)) next.delete(i);
      else next.add(i);
      return next;
    });
  }, []);
  const rows = [];
  for (let i = first; i < last; i++) {
    rows.push(<CaseRow key={i} c={props.cases[i]!} index={i} top={tops[i]!} open={open.has(i)} onToggle={toggle} />);
  }
  return (
    <Box
      ref={ref}
      onScroll={() => setScrollTop(ref.current?.scrollTop ?? 0)}
      data-testid="case-list"
      data-rendered={rows.length}
      role="list"
      aria-label="Test cases"
      sx={{ height: Math.min(height, Math.max(CASE_ROW * 2, tops[count]! + 2)), overflow: 'auto', position: 'relative' }}
    >
      <Box sx={{ height: tops[count], position: 'relative' }}>{rows}</Box>
    </Box>
  );
}

/**
 * A test's JUnit cases: failed and errored first (as the coordinator
 * orders them), each opening to its message and details with ANSI colours;
 * filtered by status and name; virtualised, so 100,000 cases scroll as
 * smoothly as ten. `queryKey` names the query: a new one starts a fresh
 * list, closed and at the top.
 */
export function CasesPanel(props: CasesPanelProps & { queryKey: string }) {
  const count = props.cases.length;
  const statusValue = props.status === undefined ? 'ALL' : TestCase_Status[props.status];
  return (
    <Stack spacing={1} data-testid="cases-panel" data-loaded={count} data-loading={props.loading}>
      <Stack direction="row" spacing={1} useFlexGap sx={{ alignItems: 'center', flexWrap: 'wrap' }}>
        <Typography variant="subtitle2" component="h3">
          Cases
        </Typography>
        <Typography variant="caption" color="text.secondary" data-testid="cases-count">
          {props.loading
            ? `${formatCount(count)} of ${formatCount(props.total)} loaded…`
            : `${formatCount(count)} shown of ${formatCount(props.total)}`}
        </Typography>
        <Box sx={{ flexGrow: 1 }} />
        <TextField
          select
          size="small"
          label="Status"
          value={statusValue}
          onChange={(e) =>
            props.onStatusChange(
              e.target.value === 'ALL' ? undefined : TestCase_Status[e.target.value as keyof typeof TestCase_Status],
            )
          }
          slotProps={{ htmlInput: { 'data-testid': 'case-status' } }}
          sx={{ minWidth: 130 }}
        >
          <MenuItem value="ALL">All</MenuItem>
          <MenuItem value="FAILED">Failed</MenuItem>
          <MenuItem value="ERROR">Error</MenuItem>
          <MenuItem value="SKIPPED">Skipped</MenuItem>
          <MenuItem value="PASSED">Passed</MenuItem>
        </TextField>
        <TextField
          size="small"
          label="Name contains"
          value={props.name}
          onChange={(e) => props.onNameChange(e.target.value)}
          slotProps={{ htmlInput: { 'aria-label': 'Case name contains', 'data-testid': 'case-name' } }}
        />
      </Stack>
      {props.note !== '' && (
        <Alert severity="warning" data-testid="case-note">
          {props.note}
        </Alert>
      )}
      {props.error !== undefined && <Alert severity="error">{props.error}</Alert>}
      <CaseListView key={props.queryKey} cases={props.cases} height={props.height ?? 420} />
    </Stack>
  );
}
