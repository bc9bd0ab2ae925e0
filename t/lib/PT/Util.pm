package PT::Util;

# Small file, process and socket helpers the harness modules and tests
# share, and the check of the programs a test needs:
#
#   use PT::Util qw(need_tools missing_tools);
#   need_tools(qw(docker-registry skopeo openssl));   # else skip_all
#   SKIP: {                                           # an optional part
#       my $missing = missing_tools('podman');
#       skip $missing, 1 if $missing;
#       ...
#   }

use strict;
use warnings;

use Carp qw(croak);
use Exporter qw(import);
use File::Spec;
use IO::Socket::INET;
use POSIX ();

our @EXPORT_OK = qw(slurp spew open_cmd run_output free_port match_requests
                    need_tools missing_tools declare_tool);


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


# The programs tests run, by name, with the Debian package that has each
# (for the skip reason). Harness modules that run a program from a file of
# their own (PT_*_BIN) add it with declare_tool; the others are looked up
# in PATH. Programs every Debian system has (sh, awk, head) need no entry;
# tar and gzip have one for t/090's optional checks.
my %TOOLS = (
    containerd => { package => 'containerd' },
    ctr      => { package => 'containerd' },
    curl     => { package => 'curl' },
    gzip     => { package => 'gzip' },
    htpasswd => { package => 'apache2-utils' },
    http     => { package => 'httpie' },
    jq       => { package => 'jq' },
    mdb_dump => { package => 'lmdb-utils' },
    mdb_load => { package => 'lmdb-utils' },
    openssl  => { package => 'openssl' },
    podman   => { package => 'podman' },
    skopeo   => { package => 'skopeo' },
    tar      => { package => 'tar' },
);

# declare_tool(NAME, PACKAGE, FILE): a harness module runs the program
# NAME from FILE (undef: NAME looked up in PATH); Debian's PACKAGE has it
sub declare_tool {
    my ($name, $package, $file) = @_;
    $TOOLS{$name} = { package => $package, path => $file };
}

# missing_tools(NAME, ...): why a test cannot run these programs, naming
# those not installed and their Debian packages (a skip reason); undef when
# all are there. An unknown name dies: a test declares what it runs, with
# its package (declare_tool, or %TOOLS above).
sub missing_tools {
    my (@names) = @_;

    my (@missing, @packages);
    for my $name (@names) {
        my $tool = $TOOLS{$name}
            or croak "missing_tools: unknown program $name (add it to "
                   . "%TOOLS in PT::Util, or declare_tool it)";
        my @paths = defined $tool->{path} ? ($tool->{path})
                  : map { "$_/$name" } File::Spec->path;
        next if grep { -f && -x } @paths;
        push @missing, defined $tool->{path} ? "$name ($tool->{path})"
                                             : $name;
        push @packages, $tool->{package}
            unless grep { $_ eq $tool->{package} } @packages;
    }
    return undef unless @missing;

    return join(', ', @missing) . ' not installed (Debian package'
        . (@packages > 1 ? 's ' : ' ') . join(', ', @packages) . ')';
}

# need_tools(NAME, ...): at the top of a test, before any work: the whole
# test is skipped (as nginx-tests do) when one of these is not installed,
# rather than failing or aborting the run halfway
sub need_tools {
    my (@names) = @_;
    my $why = missing_tools(@names) // return;
    require Test::More;
    Test::More::plan(skip_all => $why);
}

1;
