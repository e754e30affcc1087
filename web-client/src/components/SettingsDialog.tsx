import Button from '@mui/material/Button';
import Dialog from '@mui/material/Dialog';
import DialogActions from '@mui/material/DialogActions';
import DialogContent from '@mui/material/DialogContent';
import DialogContentText from '@mui/material/DialogContentText';
import DialogTitle from '@mui/material/DialogTitle';
import TextField from '@mui/material/TextField';
import { useEffect, useState } from 'react';

export interface SettingsDialogProps {
  open: boolean;
  token: string;
  onSave: (token: string) => void;
  onClose: () => void;
}

/** Edits the API token that write calls send (kept in this browser only). */
export function SettingsDialog(props: SettingsDialogProps) {
  const [value, setValue] = useState(props.token);
  useEffect(() => {
    if (props.open) setValue(props.token);
  }, [props.open, props.token]);
  const save = (token: string) => {
    props.onSave(token);
    props.onClose();
  };
  return (
    <Dialog open={props.open} onClose={props.onClose} fullWidth maxWidth="sm">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          save(value);
        }}
      >
        <DialogTitle>Settings</DialogTitle>
        <DialogContent>
          <DialogContentText sx={{ mb: 2 }}>
            A coordinator started with an API token requires it to create, cancel or delete Testruns. It is stored in
            this browser&apos;s local storage and sent as <code>authorization: Bearer …</code>.
          </DialogContentText>
          <TextField
            label="API token"
            type="password"
            autoComplete="off"
            fullWidth
            value={value}
            onChange={(e) => setValue(e.target.value)}
            slotProps={{ htmlInput: { 'data-testid': 'api-token' } }}
          />
        </DialogContent>
        <DialogActions>
          <Button onClick={() => save('')} color="inherit">
            Clear
          </Button>
          <Button onClick={props.onClose}>Cancel</Button>
          <Button type="submit" variant="contained">
            Save
          </Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}
