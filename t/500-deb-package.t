#!/usr/bin/perl

# The Debian package, as an administrator meets it. "make deb" builds
# libnginx-mod-http-pullthrough against Debian's nginx-dev. dpkg -i puts
# the module in /usr/lib/nginx/modules, its load_module line in
# /usr/share/nginx/modules-available with the link that enables it in
# /etc/nginx/modules-enabled, and the store directory owned by www-data;
# the package depends on the nginx ABI it was built for and on the
# libraries the module links, and the system's nginx -t passes with it
# enabled. An nginx of the test's own (Debian's binary, not its service:
# a configuration, a pid file and a free port of its own) loads the module
# through modules-enabled and serves the packaged example site, changed
# only in its port and store path; through its admin API, which answers
# this host only, a remote and a distribution are set up on a real
# upstream registry, and skopeo pulls an image through it. dpkg --remove
# disables and removes the module but keeps the store; dpkg --purge then
# takes away everything the package and its scripts made, and the
# system's nginx -t still passes after each.
#
# It installs into the system: root only, one run at a time. The package
# is purged at the end whatever happens; one left installed by a run that
# was killed is taken over (and purged too), but not one that is in use:
# a store with content, or a configuration naming its directives. What
# the system's nginx -t creates (its temp directories, an empty pid file)
# is removed again when it was not there before. PT_DEB names a package
# already built (make test builds one); without it, make deb builds one in
# a temporary build directory.

use strict;
use warnings;

use Test::More;
use Fcntl qw(:flock O_RDONLY);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Time::HiRes qw(time);

use PT::Nginx ();
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Child;
use PT::Util qw(slurp spew run_output free_port need_tools missing_tools
                declare_tool);

plan(skip_all => 'installs a Debian package into the system: root only')
    if $> != 0;

my $PKG = 'libnginx-mod-http-pullthrough';
my $NGINX = '/usr/sbin/nginx';            # the package is for Debian's
my $SO = '/usr/lib/nginx/modules/ngx_http_pullthrough_module.so';
my $AVAILABLE = '/usr/share/nginx/modules-available/mod-http-pullthrough.conf';
my $ENABLED = '/etc/nginx/modules-enabled/50-mod-http-pullthrough.conf';
my $STORE = '/var/lib/nginx/pullthrough';
my $EXAMPLE = "/usr/share/doc/$PKG/examples/pullthrough.conf";

declare_tool('nginx', 'nginx', $NGINX);
declare_tool('dpkg-deb', 'dpkg', undef);
declare_tool('dpkg-buildpackage', 'dpkg-dev', undef);
declare_tool('dh', 'debhelper', undef);
declare_tool('dh_nginx', 'nginx-dev', undef);
declare_tool('lintian', 'lintian', undef);

need_tools(qw(nginx dpkg-deb docker-registry skopeo openssl),
           $ENV{PT_DEB} ? () : qw(dpkg-buildpackage dh dh_nginx));

my $t0 = time;
my $tmp = tempdir('pt-500-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{PT_KEEP});
chmod 0711, $tmp;           # the workers (www-data) reach the store in it

# dpkg and the files it installs are the whole machine's: one run at a
# time, another run of this test waits here (a lock on the directory the
# package changes, which leaves no file behind)
sysopen(my $lock, '/etc/nginx/modules-enabled', O_RDONLY)
    or die "/etc/nginx/modules-enabled: $!";
flock($lock, LOCK_EX) or die "flock: $!";

# dpkg's status of the package ("install ok installed", or half-way),
# '' when it is not installed at all
sub installed {
    my $s = run_output('dpkg-query', '-W', '-f', '${Status}', $PKG);
    return $? || $s =~ / not-installed$/ ? '' : $s;
}

# what the system's nginx -t creates, as nginx -V names it: removed at the
# end when it was not there before
my @nginx_made = run_output($NGINX, '-V')
    =~ /--(?:http-[a-z-]+-temp-path|pid-path)=(\S+)/g;
my %existed = map { ($_ => -e $_) } @nginx_made;

sub system_nginx_t {
    my $out = run_output($NGINX, '-t', '-q');
    return ($?, $out);
}

# a package a killed run left behind is taken over; one in use is not
my $before = installed();
if ($before) {
    my @users = grep { !m{^/etc/nginx/modules-enabled/} }
        split /\n/, run_output('grep', '-rlE', '^\s*pullthrough_', '/etc/nginx');
    plan(skip_all => "$PKG is installed and the system's configuration "
                     . "uses it (@users): not removing it") if @users;
    my @in = grep { !m{/\.\.?$} } glob "$STORE/* $STORE/.*";
    plan(skip_all => "$PKG is installed and $STORE holds a store: not "
                     . "removing it") if @in;
    note("$PKG was installed ($before), by a run that was killed: taken over");
}

my ($rc0, $out0) = system_nginx_t();
if ($rc0) {
    cleanup_nginx_made();
    plan(skip_all => "the system's nginx -t fails before the test: $out0");
}


# the guard: whatever happens from here, the package goes and nginx stops

my ($nginx, $ours);

sub cleanup_nginx_made {
    for my $p (grep { !$existed{$_} } @nginx_made) {
        if (-d $p) { rmdir $p }
        elsif (-f $p && !-s $p) { unlink $p }
    }
}

END {
    my $status = $?;
    $nginx->stop if $nginx;
    if ($ours && installed()) {
        my $out = run_output('dpkg', '--purge', $PKG);
        diag("dpkg --purge $PKG at exit failed: $out") if $?;
    }
    cleanup_nginx_made();
    $? = $status;
}


# 1. the package

my $deb = $ENV{PT_DEB};
unless ($deb) {
    my $build = "$tmp/build";
    my $out = run_output('make', '-C', $PT::Nginx::REPO, '--no-print-directory',
                         'deb', "BUILD_DIR=$build");
    is($?, 0, 'make deb builds the package') or diag($out);
    ($deb) = grep { !/-dbgsym_/ } glob "$build/deb/${PKG}_*.deb";
    note(sprintf 'make deb: %.0f s', time - $t0);
}
ok($deb && -f $deb, 'the package: ' . ($deb // 'none'))
    or do { done_testing; exit 1 };

sub field {
    my ($f) = @_;
    my $v = run_output('dpkg-deb', '-f', $deb, $f);
    chomp $v;
    return $v;
}

my ($version) = slurp("$PT::Nginx::REPO/src/ngx_pt.h")
    =~ /^#define NGX_PT_VERSION\s+"([^"]+)"/m;
like(field('Version'), qr/^\Q$version\E-\d+$/,
     "its version is the module's ($version) and a Debian revision");
is(field('Package'), $PKG, "Package: $PKG");

my $depends = field('Depends');
my ($abi) = run_output('dpkg-query', '-W', '-f', '${Provides}', 'nginx')
    =~ /(nginx-abi-[^\s,]+)/;
ok($abi, "the installed nginx provides an ABI ($abi)");
like($depends, qr/(?:^|, )\Q$abi\E(?:,|$)/,
     "Depends: the ABI of the nginx it was built for ($abi)");
for my $lib (qw(libcurl4 libyajl2 liblmdb0 libssl3 libc6)) {
    like($depends, qr/(?:^|, )\Q$lib\E[ ,(]/, "Depends: $lib (dpkg-shlibdeps)");
}

SKIP: {
    my $missing = missing_tools('lintian');
    skip $missing, 1 if $missing;
    # a package for local use closes no ITP bug
    my $out = run_output('lintian', '--suppress-tags',
                         'initial-upload-closes-no-bugs', $deb);
    my @tags = grep { /^[EW]: / } split /\n/, $out;
    is_deeply(\@tags, [], 'lintian: no error, no warning') or diag($out);
}

# what the package holds: its files, and its directories with whether
# each was there before
my (@files, @dirs);
for (split /\n/, run_output('dpkg-deb', '-c', $deb)) {
    my ($type, $path) = m{^(\S)\S* \S+ +\d+ \S+ \S+ \.(/\S*?)/?(?: -> .*)?$}
        or next;
    if ($type eq 'd') { push @dirs, $path if $path ne '/' }
    else { push @files, $path }
}
my %dir_existed = map { ($_ => -d $_) } @dirs;
ok(scalar(grep { $_ eq $SO } @files), "$SO is in the package");
ok(scalar(grep { $_ eq $AVAILABLE } @files), "... and $AVAILABLE");


# 2. installed

$ours = 1;
my $out = run_output('dpkg', '-i', $deb);
is($?, 0, 'dpkg -i installs it') or diag($out);
like(installed(), qr/^install ok installed$/, "dpkg: $PKG installed");

ok(-f $SO, "the module: $SO");
is(slurp($AVAILABLE), "load_module modules/ngx_http_pullthrough_module.so;\n",
   "$AVAILABLE loads it");
is(readlink($ENABLED), $AVAILABLE, "$ENABLED links to it");
my @st = stat $STORE;
my ($www_uid, $www_gid) = (getpwnam 'www-data')[2, 3];
ok(-d $STORE, "the store directory $STORE");
is_deeply([ @st[4, 5], $st[2] & 07777 ], [ $www_uid, $www_gid, 0700 ],
          '... owned by www-data:www-data, mode 0700');
ok(-f $EXAMPLE, "the example site: $EXAMPLE");
ok(-f "/usr/share/doc/$PKG/copyright"
   && -f "/usr/share/doc/$PKG/changelog.Debian.gz",
   'copyright and changelog.Debian.gz');

my ($rc, $tout) = system_nginx_t();
is($rc, 0, "the system's nginx -t passes with the module enabled")
    or diag($tout);


# 3. an nginx of the test's own, with the module as the package enables it
# and the example site

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, 'hello');

my $port = free_port();
my $dir = "$tmp/nginx";
mkdir $dir;
chmod 0711, $dir;

my $site = slurp($EXAMPLE);
ok($site =~ s/^(\s*listen\s+)24817;/${1}127.0.0.1:$port;/m,
   'the example site listens on port 24817 (changed to a free port)');
ok($site =~ s/^(\s*pullthrough_store\s+)\Q$STORE\E(?=[\s;])/$1$dir\/store/m,
   "... keeps its store in $STORE (changed to the test's)");
like($site, qr{location /v2/ \{\s*pullthrough_registry;}, '... serves the registry on /v2/');
like($site, qr{location /pulp/api/v3/ \{\s*pullthrough_admin;\s*allow 127\.0\.0\.1;\s*allow ::1;\s*deny all;},
     '... and the admin API on /pulp/api/v3/, this host only');
spew("$dir/pullthrough.conf", $site);

# as Debian's nginx.conf has it, with the test's own pid, logs and temp
# paths
spew("$dir/nginx.conf", <<"EOF");
user www-data;
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
lock_file $dir/nginx.lock;
error_log $dir/error.log info;
include /etc/nginx/modules-enabled/*.conf;

events {
    worker_connections 256;
}

http {
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;

    include $dir/pullthrough.conf;
}
EOF

$nginx = SystemNginx->new(dir => $dir, port => $port, store => "$dir/store");
ok($nginx->start, "$NGINX -c $dir/nginx.conf answers on 127.0.0.1:$port")
    or diag($nginx->error_log . slurp("$dir/stderr.log"));

my @workers = @{ $nginx->worker_pids };
ok(@workers && slurp("/proc/$workers[0]/maps") =~ /\Q$SO\E/,
   "its worker has the package's $SO loaded");
is_deeply([ map { (stat "/proc/$_")[4] } @workers ], [ map { $www_uid } @workers ],
          '... and runs as www-data');
my $m = $nginx->get('/metrics');
like($m->{content}, qr/^pullthrough_build_info\{version="\Q$version\E"\} 1$/m,
     "its metrics: version $version");

# the admin API answers this host (127.0.0.1, ::1) only
my $other = HTTP::Tiny->new(local_address => '127.0.0.2', timeout => 10);
is($other->get("http://127.0.0.1:$port$REMOTES")->{status}, 403,
   'the admin API refuses another address (127.0.0.2)');
is($other->get("http://127.0.0.1:$port/v2/")->{status}, 200,
   '... which the registry serves');

my $dist = eval { setup_cache($nginx, $reg->url) };
ok($dist && $dist->{base_path} eq 'cache',
   'a remote and a distribution through the admin API') or diag($@);

my $ref = 'library/hello:1.0';
my ($src) = ("docker://127.0.0.1:$port/cache/$ref");
my ($prc, $pout) = skopeo('copy', '--src-tls-verify=false', $src,
                          "dir:$tmp/pulled");
is($prc, 0, "skopeo copy $src") or diag($pout);
is(-f "$tmp/pulled/manifest.json" ? file_digest("$tmp/pulled/manifest.json") : 'none',
   $img->{$ref}{digest}, '... gets the upstream manifest');
my @blobs = ($img->{$ref}{config}, @{ $img->{$ref}{layers} });
is_deeply([ grep { !-f "$tmp/pulled/" . substr($_, 7) } @blobs ], [],
          '... and its blobs');
is_deeply([ grep { !-f blob_file($nginx, $_) } @blobs ], [],
          '... which are in the store now');
is((stat "$dir/store/meta/data.mdb")[4], $www_uid,
   '... which nginx gave to www-data');

$nginx->stop;
ok(!$nginx->is_running, 'nginx stops');
$nginx->check_error_log;


# 4. removed, the store stays; purged, nothing of it is left

$out = run_output('dpkg', '--remove', $PKG);
is($?, 0, "dpkg --remove $PKG") or diag($out);
is_deeply([ grep { -e $_ || -l $_ } $SO, $AVAILABLE, $ENABLED ], [],
          '... takes the module, its load_module file and the link away');
ok(-d $STORE, '... and leaves the store directory');
($rc, $tout) = system_nginx_t();
is($rc, 0, "the system's nginx -t passes after the removal") or diag($tout);

$out = run_output('dpkg', '--purge', $PKG);
is($?, 0, "dpkg --purge $PKG") or diag($out);
is(installed(), '', '... it is not installed any more');
is_deeply([ grep { -e $_ || -l $_ } @files, $ENABLED, "$ENABLED.removed", $STORE ],
          [], '... its files, the link and the store are gone');
is_deeply([ grep { -d $_ && !$dir_existed{$_} } @dirs ], [],
          '... and the directories it made');

($rc, $tout) = system_nginx_t();
is($rc, 0, "the system's nginx -t passes after the purge") or diag($tout);

note(sprintf 'done in %.0f s', time - $t0);

done_testing;


# Debian's nginx as the package is used: no -p (load_module's relative
# path is nginx's own prefix), the module from modules-enabled. PT::Child
# runs it (a watcher stops it if the test is killed), PT::Nginx gives the
# requests, the workers' pids and the check of error.log.
package SystemNginx;

use parent -norequire, 'PT::Child', 'PT::Nginx';
use Time::HiRes qw(sleep time);

sub new {
    my ($class, %o) = @_;
    my $self = bless { dir => $o{dir}, store => $o{store},
                       ports => { 1 => $o{port} }, allow_log => [] }, $class;
    return $self->_track;
}

sub name { 'nginx' }
sub timeout { 15 }

# true once /v2/ answers 200, false when nginx exits first
sub start {
    my ($self) = @_;
    my $d = $self->{dir};
    delete local $ENV{NGINX};
    $self->_spawn(sub {
        open STDOUT, '>>', "$d/stderr.log";
        open STDERR, '>&', \*STDOUT;
    }, $NGINX, '-c', "$d/nginx.conf", '-e', "$d/error.log");

    my $deadline = time + $self->timeout;
    while (time < $deadline) {
        return 0 if $self->_exited;
        return 1 if $self->get('/v2/', timeout => 2)->{status} == 200;
        sleep 0.05;
    }
    return 0;
}
