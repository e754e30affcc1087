import CloseIcon from '@mui/icons-material/Close';
import DescriptionOutlinedIcon from '@mui/icons-material/DescriptionOutlined';
import Alert from '@mui/material/Alert';
import Button from '@mui/material/Button';
import FormHelperText from '@mui/material/FormHelperText';
import IconButton from '@mui/material/IconButton';
import List from '@mui/material/List';
import ListItem from '@mui/material/ListItem';
import ListItemIcon from '@mui/material/ListItemIcon';
import ListItemText from '@mui/material/ListItemText';
import Paper from '@mui/material/Paper';
import Stack from '@mui/material/Stack';
import TextField from '@mui/material/TextField';
import ToggleButton from '@mui/material/ToggleButton';
import ToggleButtonGroup from '@mui/material/ToggleButtonGroup';
import Typography from '@mui/material/Typography';
import { useState, type FormEvent } from 'react';
import { FileDropZone } from '../components/FileDropZone';
import { WorkspaceProgressView } from '../components/WorkspaceProgressView';
import type { FieldErrors } from '../lib/errors';
import type { NewTestrun, NewWorkspaceTestrun, WorkspaceProgress } from '../store/TestrunStore';
import { EMPTY_SCHEDULING, parseScheduling, schedulingFieldOf, type Scheduling, type SchedulingValues } from '../lib/scheduling';
import { SchedulingFields } from './SchedulingFields';
import { expandPatterns, parseEnv, splitPatterns } from '../workspace/patterns';
import { EMPTY_WORKSPACE, WorkspaceFields, workspaceFieldOf, type WorkspaceValues } from './WorkspaceFields';

/** A picked file, read as text. */
export interface PickedFile {
  name: string;
  content: string;
  size: number;
}

export interface NewTestrunPageProps {
  initialUsername?: string;
  /** Creates the Testrun; resolves to errors by field, or null on success. */
  onSubmit: (input: NewTestrun) => Promise<FieldErrors | null>;
  /**
   * Uploads the folder and creates a workspace Testrun, reporting progress;
   * resolves to errors by field, or null on success. Without it the form
   * offers test files only.
   */
  onSubmitWorkspace?: (
    input: NewWorkspaceTestrun,
    onProgress: (p: WorkspaceProgress) => void,
  ) => Promise<FieldErrors | null>;
}

type Mode = 'files' | 'workspace';

/** A whole number of seconds from a text field, or an error. */
function parseSeconds(text: string): { ok: true; value?: number } | { ok: false } {
  const t = text.trim();
  if (t === '') return { ok: true };
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) return { ok: false };
  return { ok: true, value: n };
}

/** Errors that belong to file `i` of the request (`tests[i].name`, ...). */
function fileError(errors: FieldErrors, i: number): string | undefined {
  const prefix = `tests[${i}]`;
  const key = Object.keys(errors).find((k) => k === prefix || k.startsWith(`${prefix}.`));
  return key === undefined ? undefined : errors[key];
}

/** Errors not shown beside a field of this form. */
function otherErrors(errors: FieldErrors, mode: Mode = 'files'): string[] {
  return Object.entries(errors)
    .filter(([k]) => !['username', 'tests', 'command', 'timeout_seconds'].includes(k) && !/^tests\[\d+\]/.test(k))
    .filter(([k]) => schedulingFieldOf(k) === undefined)
    .filter(([k]) => mode === 'files' || workspaceFieldOf(k) === undefined)
    .map(([k, v]) => (k === '' ? v : `${k}: ${v}`));
}

/** A file's content as UTF-8 text (FileReader where Blob.text is missing, as in jsdom). */
function readText(file: File): Promise<string> {
  if (typeof file.text === 'function') return file.text();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result ?? ''));
    reader.onerror = () => reject(reader.error ?? new Error(`cannot read ${file.name}`));
    reader.readAsText(file);
  });
}

/** Drops errors about files: once the list changes, their indices are stale. */
function withoutFileErrors(errors: FieldErrors): FieldErrors {
  return Object.fromEntries(Object.entries(errors).filter(([k]) => k !== 'tests' && !k.startsWith('tests[')));
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The create form: username, files (picked or dropped), command and timeout. */
export function NewTestrunPage(props: NewTestrunPageProps) {
  const [username, setUsername] = useState(props.initialUsername ?? '');
  const [files, setFiles] = useState<PickedFile[]>([]);
  const [command, setCommand] = useState('');
  const [timeout, setTimeoutText] = useState('');
  const [sched, setSched] = useState<SchedulingValues>(EMPTY_SCHEDULING);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [busy, setBusy] = useState(false);
  const [mode, setMode] = useState<Mode>('files');
  const [ws, setWs] = useState<WorkspaceValues>(EMPTY_WORKSPACE);
  const [progress, setProgress] = useState<WorkspaceProgress>();
  /** The tests of the last workspace submission, to name `tests[i]` errors. */
  const [wsTests, setWsTests] = useState<string[]>([]);

  const addFiles = async (picked: File[]) => {
    const read = await Promise.all(
      picked.map(async (f) => ({ name: f.name, content: await readText(f), size: f.size })),
    );
    setFiles((old) => {
      // A file with the same name replaces the one picked before.
      const names = new Set(read.map((f) => f.name));
      return [...old.filter((f) => !names.has(f.name)), ...read];
    });
    // File indices moved: errors about files no longer apply.
    setErrors(withoutFileErrors);
  };

  const submitWorkspace = async (timeoutSeconds: number | undefined, scheduling: Scheduling) => {
    const local: FieldErrors = {};
    if (ws.folder === undefined || ws.folder.files.length === 0) {
      local.workspace = ws.folder === undefined ? 'choose or drop a folder' : 'the folder has no files to upload';
    }
    const expanded = expandPatterns(splitPatterns(ws.patterns), ws.folder?.files.map((f) => f.path) ?? []);
    if (!expanded.ok && ws.folder !== undefined) local.tests = expanded.error;
    if (splitPatterns(ws.patterns).length === 0) local.tests = 'give at least one test pattern';
    const env = parseEnv(ws.env);
    if (!env.ok) local.env = env.error;
    const setupTimeout = parseSeconds(ws.setupTimeout);
    if (!setupTimeout.ok) local.setup_timeout_seconds = 'must be a whole number of seconds, at least 1';
    if (Object.keys(local).length > 0 || !expanded.ok || !env.ok || !setupTimeout.ok || ws.folder === undefined) {
      setErrors(local);
      return;
    }
    setBusy(true);
    setErrors({});
    setWsTests(expanded.tests);
    try {
      const result = await props.onSubmitWorkspace!(
        {
          username,
          folder: ws.folder,
          tests: expanded.tests,
          setup: ws.setup,
          env: env.env,
          command,
          ...(timeoutSeconds !== undefined && { timeoutSeconds }),
          ...(setupTimeout.value !== undefined && { setupTimeoutSeconds: setupTimeout.value }),
          ...scheduling,
        },
        setProgress,
      );
      if (result !== null) setErrors(result);
    } finally {
      setBusy(false);
      setProgress(undefined);
    }
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const scheduling = parseScheduling(sched);
    if (!scheduling.ok) {
      setErrors(scheduling.errors);
      return;
    }
    if (mode === 'workspace') {
      const t = parseSeconds(timeout);
      if (!t.ok) {
        setErrors({ timeout_seconds: 'must be a whole number of seconds, at least 1' });
        return;
      }
      await submitWorkspace(t.value, scheduling.value);
      return;
    }
    const t = timeout.trim();
    let timeoutSeconds: number | undefined;
    if (t !== '') {
      timeoutSeconds = Number(t);
      if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 1 || timeoutSeconds > 0xffffffff) {
        setErrors({ timeout_seconds: 'must be a whole number of seconds, at least 1' });
        return;
      }
    }
    setBusy(true);
    setErrors({});
    try {
      const result = await props.onSubmit({
        username,
        files: files.map((f) => ({ name: f.name, content: f.content })),
        command,
        ...(timeoutSeconds !== undefined && { timeoutSeconds }),
        ...scheduling.value,
      });
      if (result !== null) setErrors(result);
    } finally {
      setBusy(false);
    }
  };

  const others = otherErrors(errors, mode);
  return (
    <Paper component="form" onSubmit={(e: FormEvent) => void submit(e)} noValidate sx={{ p: { xs: 2, sm: 4 }, maxWidth: 760, mx: 'auto' }}>
      <Typography variant="h5" component="h1" gutterBottom>
        New Testrun
      </Typography>
      <Stack spacing={3}>
        {others.map((m) => (
          <Alert key={m} severity="error" data-testid="form-error">
            {m}
          </Alert>
        ))}
        <TextField
          label="Username"
          name="username"
          required
          autoFocus
          value={username}
          onChange={(e) => setUsername(e.target.value)}
          error={errors.username !== undefined}
          helperText={errors.username ?? 'Who runs these tests (1 to 64 characters).'}
          slotProps={{
            htmlInput: { 'data-testid': 'username' },
            formHelperText: { id: 'username-helper', 'data-testid': 'username-helper' } as object,
          }}
        />

        {props.onSubmitWorkspace !== undefined && (
          <ToggleButtonGroup
            exclusive
            color="primary"
            size="small"
            value={mode}
            onChange={(_, m: Mode | null) => {
              if (m === null) return;
              setMode(m);
              setErrors({});
            }}
            aria-label="What to run"
          >
            <ToggleButton value="files" data-testid="mode-files">
              Test files
            </ToggleButton>
            <ToggleButton value="workspace" data-testid="mode-workspace">
              Workspace (a project folder)
            </ToggleButton>
          </ToggleButtonGroup>
        )}

        {mode === 'workspace' && (
          <WorkspaceFields
            values={ws}
            onChange={(patch) => {
              setWs((old) => ({ ...old, ...patch }));
              // Errors about the fields that changed no longer apply.
              setErrors((old) =>
                Object.fromEntries(
                  Object.entries(old).filter(([k]) => {
                    const f = workspaceFieldOf(k);
                    if (patch.folder !== undefined) return f !== 'workspace' && f !== 'tests';
                    return !(
                      (patch.patterns !== undefined && f === 'tests') ||
                      (patch.env !== undefined && f === 'env') ||
                      (patch.setup !== undefined && f === 'setup') ||
                      (patch.setupTimeout !== undefined && f === 'setup_timeout_seconds')
                    );
                  }),
                ),
              );
            }}
            errors={errors}
            tests={wsTests}
            onFolderError={(m) => setErrors((old) => ({ ...old, workspace: m }))}
            disabled={busy}
          />
        )}

        {mode === 'files' && (
          <div>
            <Typography variant="subtitle1" gutterBottom>
              Test files
            </Typography>
            <FileDropZone onFiles={(f) => void addFiles(f)} error={errors.tests !== undefined} />
            {errors.tests !== undefined && (
              <FormHelperText error data-testid="tests-error">
                {errors.tests}
              </FormHelperText>
            )}
            {files.length > 0 && (
              <List dense data-testid="file-list">
                {files.map((f, i) => {
                  const err = fileError(errors, i);
                  return (
                    <ListItem
                      key={f.name}
                      secondaryAction={
                        <IconButton
                          edge="end"
                          aria-label={`Remove ${f.name}`}
                          onClick={() => {
                            setFiles((old) => old.filter((x) => x.name !== f.name));
                            setErrors(withoutFileErrors);
                          }}
                        >
                          <CloseIcon />
                        </IconButton>
                      }
                    >
                      <ListItemIcon sx={{ minWidth: 36 }}>
                        <DescriptionOutlinedIcon color={err !== undefined ? 'error' : 'action'} />
                      </ListItemIcon>
                      <ListItemText
                        primary={f.name}
                        secondary={err ?? formatSize(f.size)}
                        slotProps={{ secondary: { color: err !== undefined ? 'error' : 'textSecondary' } }}
                      />
                    </ListItem>
                  );
                })}
              </List>
            )}
          </div>
        )}

        <TextField
          label="Command template (optional)"
          name="command"
          placeholder="pytest -q {file}"
          value={command}
          onChange={(e) => setCommand(e.target.value)}
          error={errors.command !== undefined}
          helperText={
            errors.command ?? 'Run for every file; {file} is replaced by its path. Empty: shebang or extension decides.'
          }
          slotProps={{ htmlInput: { 'data-testid': 'command', spellCheck: false } }}
        />
        <TextField
          label="Timeout per test, seconds (optional)"
          name="timeout_seconds"
          inputMode="numeric"
          value={timeout}
          onChange={(e) => setTimeoutText(e.target.value)}
          error={errors.timeout_seconds !== undefined}
          helperText={errors.timeout_seconds ?? 'Empty: the coordinator default.'}
          slotProps={{ htmlInput: { 'data-testid': 'timeout' } }}
          sx={{ maxWidth: 320 }}
        />
        <SchedulingFields
          values={sched}
          onChange={(patch) => {
            setSched((old) => ({ ...old, ...patch }));
            // Errors about the fields that changed no longer apply.
            setErrors((old) =>
              Object.fromEntries(
                Object.entries(old).filter(([k]) => {
                  const f = schedulingFieldOf(k);
                  return f === undefined || !(f in patch);
                }),
              ),
            );
          }}
          errors={errors}
          disabled={busy}
        />
        {progress !== undefined && <WorkspaceProgressView progress={progress} />}
        <Stack direction="row" spacing={2} sx={{ justifyContent: 'flex-end' }}>
          <Button type="submit" variant="contained" size="large" disabled={busy} data-testid="submit">
            {busy ? (mode === 'workspace' ? 'Uploading…' : 'Creating…') : 'Create Testrun'}
          </Button>
        </Stack>
      </Stack>
    </Paper>
  );
}
