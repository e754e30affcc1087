import Chip from '@mui/material/Chip';
import type { Test_Status, Testrun_Status } from '../gen/testrunner/v1/testrun_pb';
import {
  testStatusColor,
  testStatusName,
  testrunStatusColor,
  testrunStatusName,
} from '../lib/status';

/** A Testrun's status as a coloured chip. */
export function TestrunStatusChip(props: { status: Testrun_Status }) {
  const name = testrunStatusName(props.status);
  return (
    <Chip
      size="small"
      label={name}
      color={testrunStatusColor(props.status)}
      data-status={name}
      data-testid="testrun-status"
      sx={{ fontWeight: 600, minWidth: 84 }}
    />
  );
}

/** A test's status as a coloured chip. */
export function TestStatusChip(props: { status: Test_Status }) {
  const name = testStatusName(props.status);
  return (
    <Chip
      size="small"
      variant="outlined"
      label={name}
      color={testStatusColor(props.status)}
      data-status={name}
      sx={{ fontWeight: 600, minWidth: 76 }}
    />
  );
}
