package PT::Util;

# Small file, process and socket helpers the harness modules and tests
# share.

use strict;
use warnings;

use Exporter qw(import);
use IO::Socket::INET;
use POSIX ();

our @EXPORT_OK = qw(slurp spew open_cmd run_output free_port match_requests);


# a file's bytes, '' when it cannot be read
sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return scalar <$fh> // '';
}


sub spew {
    my ($file, $data) = @_;
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $data;
    close $fh or die "$file: $!";
}


# starts a command (no shell), stdin from /dev/null; returns its pid and a
# handle reading its stdout and stderr together
sub open_cmd {
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';
        { no warnings 'exec'; exec @cmd; }
        print "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    return ($pid, $fh);
}


# runs a command as open_cmd does; its output, with the exit status in $?
sub run_output {
    my (@cmd) = @_;
    my (undef, $fh) = open_cmd(@cmd);
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}


# a loopback TCP port that was free a moment ago
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "free_port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}


# match_requests(FIELD, METHOD, RE, REQUESTS...): the requests (hashes, as
# the servers' requests() give them) whose method is METHOD (undef: any)
# and whose FIELD matches RE (a regexp, or a string it contains; undef:
# any), in their order; what the servers' requests_matching return
sub match_requests {
    my ($field, $method, $re, @requests) = @_;
    $re = qr/\Q$re\E/ if defined $re && !ref $re;
    return grep {
        (!defined $method || $_->{method} eq $method)
            && (!defined $re || $_->{$field} =~ $re)
    } @requests;
}

1;
