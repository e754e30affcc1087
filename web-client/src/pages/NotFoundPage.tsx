import Button from '@mui/material/Button';
import Paper from '@mui/material/Paper';
import Typography from '@mui/material/Typography';
import { Link as RouterLink } from 'react-router';

/** Shown for unknown paths and for Testruns that do not exist. */
export function NotFoundPage(props: { title?: string; message?: string }) {
  return (
    <Paper data-testid="not-found" sx={{ p: { xs: 3, sm: 6 }, textAlign: 'center', mt: 4 }}>
      <Typography variant="h2" component="p" color="text.secondary" sx={{ fontWeight: 300 }}>
        404
      </Typography>
      <Typography variant="h5" component="h1" gutterBottom>
        {props.title ?? 'Not Found'}
      </Typography>
      <Typography color="text.secondary" sx={{ mb: 3 }}>
        {props.message ?? 'There is no page at this address.'}
      </Typography>
      <Button component={RouterLink} to="/" variant="contained">
        Back to Testruns
      </Button>
    </Paper>
  );
}
