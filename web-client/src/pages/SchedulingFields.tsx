import MenuItem from '@mui/material/MenuItem';
import Stack from '@mui/material/Stack';
import TextField from '@mui/material/TextField';
import type { FieldErrors } from '../lib/errors';
import { MAX_RETRIES, schedulingError, type SchedulingValues } from '../lib/scheduling';

export interface SchedulingFieldsProps {
  values: SchedulingValues;
  onChange: (patch: Partial<SchedulingValues>) => void;
  errors: FieldErrors;
  disabled?: boolean;
}

const RETRY_CHOICES = Array.from({ length: MAX_RETRIES + 1 }, (_, i) => i);

/** Suite, retries and runner selector of a new Testrun. */
export function SchedulingFields(props: SchedulingFieldsProps) {
  const { values, errors } = props;
  const suiteError = schedulingError(errors, 'suite');
  const retriesError = schedulingError(errors, 'retries');
  const selectorError = schedulingError(errors, 'selector');
  return (
    <>
      <Stack direction={{ xs: 'column', sm: 'row' }} spacing={2}>
        <TextField
          label="Suite (optional)"
          name="suite"
          value={values.suite}
          disabled={props.disabled}
          onChange={(e) => props.onChange({ suite: e.target.value })}
          error={suiteError !== undefined}
          helperText={suiteError ?? 'Whose durations and outcomes this run reads and adds to. Empty: the username.'}
          slotProps={{ htmlInput: { 'data-testid': 'suite', spellCheck: false } }}
          sx={{ flexGrow: 1 }}
        />
        <TextField
          select
          label="Retries"
          name="retries"
          value={values.retries}
          disabled={props.disabled}
          onChange={(e) => props.onChange({ retries: Number(e.target.value) })}
          error={retriesError !== undefined}
          helperText={retriesError ?? 'More runs of a failed test.'}
          slotProps={{ select: { SelectDisplayProps: { 'data-testid': 'retries' } as object } }}
          sx={{ minWidth: 140 }}
        >
          {RETRY_CHOICES.map((n) => (
            <MenuItem key={n} value={n} data-testid={`retries-${n}`}>
              {n}
            </MenuItem>
          ))}
        </TextField>
      </Stack>
      <TextField
        label="Runner selector (optional)"
        name="selector"
        placeholder="gpu=a100, os=linux"
        value={values.selector}
        disabled={props.disabled}
        onChange={(e) => props.onChange({ selector: e.target.value })}
        error={selectorError !== undefined}
        helperText={selectorError ?? 'Labels a runner must all have, key=value, separated by commas. Empty: any runner.'}
        slotProps={{ htmlInput: { 'data-testid': 'selector', spellCheck: false } }}
      />
    </>
  );
}
