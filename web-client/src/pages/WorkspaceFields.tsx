// The Workspace part of the New Testrun form: the folder, test patterns,
// set-up and environment. Controlled: the page holds the values.

import FolderOutlinedIcon from '@mui/icons-material/FolderOutlined';
import Box from '@mui/material/Box';
import FormHelperText from '@mui/material/FormHelperText';
import Stack from '@mui/material/Stack';
import TextField from '@mui/material/TextField';
import Typography from '@mui/material/Typography';
import { FolderDropZone } from '../components/FolderDropZone';
import type { FieldErrors } from '../lib/errors';
import { formatBytes, formatCount } from '../lib/format';
import type { PickedFolder } from '../workspace/collect';

export interface WorkspaceValues {
  folder?: PickedFolder | undefined;
  patterns: string;
  setup: string;
  setupTimeout: string;
  env: string;
}

export const EMPTY_WORKSPACE: WorkspaceValues = { patterns: '', setup: '', setupTimeout: '', env: '' };

/** The form field a request field's error belongs to, in Workspace mode. */
export function workspaceFieldOf(key: string): keyof typeof WORKSPACE_FIELDS | undefined {
  if (key === 'workspace' || key.startsWith('workspace.') || key.startsWith('workspace[')) return 'workspace';
  if (key === 'tests' || key.startsWith('tests[') || key.startsWith('tests.')) return 'tests';
  if (key === 'setup_timeout_seconds') return 'setup_timeout_seconds';
  if (key === 'setup') return 'setup';
  if (key === 'env' || key.startsWith('env.') || key.startsWith('env[')) return 'env';
  return undefined;
}

const WORKSPACE_FIELDS = { workspace: 0, tests: 0, setup: 0, setup_timeout_seconds: 0, env: 0 };

/**
 * The errors shown beside one field: the bare field's message, or
 * `tests[3].name (tests/x.py): ...` for a deeper path (named by the test
 * it means when known).
 */
export function errorsFor(errors: FieldErrors, field: string, tests: readonly string[]): string | undefined {
  const lines = Object.entries(errors)
    .filter(([k]) => workspaceFieldOf(k) === field)
    .map(([k, v]) => {
      if (k === field) return v;
      const i = /^tests\[(\d+)\]/.exec(k)?.[1];
      const test = i === undefined ? undefined : tests[Number(i)];
      return `${k}${test === undefined ? '' : ` (${test})`}: ${v}`;
    });
  return lines.length === 0 ? undefined : lines.join('; ');
}

export interface WorkspaceFieldsProps {
  values: WorkspaceValues;
  onChange: (patch: Partial<WorkspaceValues>) => void;
  errors: FieldErrors;
  /** The tests of the last submission (to name `tests[i]` errors). */
  tests: readonly string[];
  onFolderError: (message: string) => void;
  disabled?: boolean;
}

export function WorkspaceFields(props: WorkspaceFieldsProps) {
  const { values: v, errors } = props;
  const err = (field: string) => errorsFor(errors, field, props.tests);
  const folderError = err('workspace');
  const testsError = err('tests');
  const folder = v.folder;
  return (
    <>
      <div>
        <Typography variant="subtitle1" gutterBottom>
          Folder
        </Typography>
        <FolderDropZone
          onFolder={(f) => props.onChange({ folder: f })}
          onError={props.onFolderError}
          error={folderError !== undefined}
          disabled={props.disabled}
        />
        {folder !== undefined && (
          <Stack direction="row" spacing={1} sx={{ alignItems: 'center', mt: 1 }} data-testid="folder-summary">
            <FolderOutlinedIcon color="action" />
            <Box>
              <Typography variant="body2" component="div" sx={{ fontFamily: 'monospace' }}>
                {folder.name === '' ? '(dropped items)' : folder.name}
              </Typography>
              <Typography variant="caption" color="text.secondary" component="div" data-testid="folder-counts">
                {formatCount(folder.files.length)} files,{' '}
                {formatBytes(folder.files.reduce((n, f) => n + f.blob.size, 0))}
                {folder.ignored > 0 && ` (${formatCount(folder.ignored)} left out by .git and the top-level .gitignore / .ignore)`}
              </Typography>
            </Box>
          </Stack>
        )}
        {folderError !== undefined && (
          <FormHelperText error data-testid="workspace-error">
            {folderError}
          </FormHelperText>
        )}
      </div>
      <TextField
        label="Test patterns"
        name="patterns"
        required
        multiline
        minRows={2}
        placeholder={'tests/**/test_*.py'}
        value={v.patterns}
        disabled={props.disabled}
        onChange={(e) => props.onChange({ patterns: e.target.value })}
        error={testsError !== undefined}
        helperText={
          testsError ??
          'One per line: a path or glob relative to the folder (*, ?, [abc], ** for any depth); path::selector is kept as is.'
        }
        slotProps={{
          htmlInput: { 'data-testid': 'patterns', spellCheck: false },
          formHelperText: { 'data-testid': 'patterns-helper' } as object,
        }}
      />
      <TextField
        label="Set-up command (optional)"
        name="setup"
        placeholder="pip install -e ."
        value={v.setup}
        disabled={props.disabled}
        onChange={(e) => props.onChange({ setup: e.target.value })}
        error={err('setup') !== undefined}
        helperText={err('setup') ?? 'Run once per runner at the folder root before its first test.'}
        slotProps={{ htmlInput: { 'data-testid': 'setup', spellCheck: false } }}
      />
      <TextField
        label="Set-up timeout, seconds (optional)"
        name="setup_timeout_seconds"
        inputMode="numeric"
        value={v.setupTimeout}
        disabled={props.disabled}
        onChange={(e) => props.onChange({ setupTimeout: e.target.value })}
        error={err('setup_timeout_seconds') !== undefined}
        helperText={err('setup_timeout_seconds') ?? 'Empty: the coordinator default.'}
        slotProps={{
          htmlInput: { 'data-testid': 'setup-timeout' },
          formHelperText: { 'data-testid': 'setup-timeout-helper' } as object,
        }}
        sx={{ maxWidth: 320 }}
      />
      <TextField
        label="Environment (optional)"
        name="env"
        multiline
        minRows={2}
        placeholder={'CI=true\nPYTHONPATH=src'}
        value={v.env}
        disabled={props.disabled}
        onChange={(e) => props.onChange({ env: e.target.value })}
        error={err('env') !== undefined}
        helperText={err('env') ?? 'NAME=value per line, for every test and the set-up. PATH, HOME, TMPDIR and TESTRUNNER_* are the runner’s.'}
        slotProps={{
          htmlInput: { 'data-testid': 'env', spellCheck: false },
          formHelperText: { 'data-testid': 'env-helper' } as object,
        }}
      />
    </>
  );
}
